import pytest

import dgm


def test_list_models_describes_each():
    rows = dgm.list_models()
    assert any(r["name"] == "independent" for r in rows)
    for r in rows:
        assert r["description"] and r["paper"] and r["family"]


def test_unknown_name_lists_valid_ones():
    with pytest.raises(dgm.ConfigError, match="unknown model 'nade2'.*independent"):
        dgm.build("nade2", event_shape=(4,))


def test_unknown_and_missing_options():
    with pytest.raises(dgm.ConfigError, match="no option 'hidden'.*options are: event_shape"):
        dgm.build("independent", event_shape=(4,), hidden=3)
    with pytest.raises(dgm.ConfigError, match="needs option 'event_shape'"):
        dgm.build("independent")
    with pytest.raises(dgm.ConfigError, match="support"):
        dgm.build("independent", event_shape=(4,), support="ternary")
    with pytest.raises(dgm.ConfigError, match="event_shape"):
        dgm.build("independent", event_shape=(0,))
    with pytest.raises(dgm.ConfigError, match="'model' key"):
        dgm.build({"event_shape": [3]})


def test_config_is_json_and_rebuilds():
    import json

    m = dgm.build("independent", event_shape=(2, 3), support="categorical(4)", alpha=0.25)
    cfg = json.loads(json.dumps(m.config))
    assert cfg == {
        "model": "independent",
        "event_shape": [2, 3],
        "support": "categorical(4)",
        "alpha": 0.25,
        "min_scale": 0.001,
    }
    assert dgm.build(cfg).config == cfg
    assert dgm.build(cfg, alpha=2.0).config["alpha"] == 2.0
