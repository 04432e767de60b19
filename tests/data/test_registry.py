import pytest

from dgm.core.errors import ConfigError
from dgm.data import list_datasets, load

TOYS = {"moons", "circles", "8gaussians", "checkerboard", "pinwheel", "spirals"}
REQUIRED = TOYS | {"digits", "digits-binary", "mnist", "binarized-mnist", "mnist-dynamic", "tinyshakespeare"}
REQUIRED |= {"digits-dequantized", "mnist-dequantized"}


def test_list_datasets(tmp_path):
    records = list_datasets(tmp_path)  # an empty data directory
    assert {r["name"] for r in records} == REQUIRED
    for r in records:
        assert set(r) >= {"name", "description", "splits", "event_shape", "support", "source"}
        assert "\n" not in r["description"] and r["splits"]["test"] > 0
        assert r["files"] == ("missing" if r["download"] else "embedded")


def test_list_datasets_reports_present_files(tmp_path):
    (tmp_path / "text" / "tinyshakespeare").mkdir(parents=True)
    (tmp_path / "text" / "tinyshakespeare" / "input.txt").write_text("hello")
    status = {r["name"]: r["files"] for r in list_datasets(tmp_path)}
    assert (
        status["tinyshakespeare"] == "present"
        and status["mnist"] == "missing"
        and status["moons"] == "embedded"
    )


def test_unknown_name_lists_valid_names():
    with pytest.raises(ConfigError, match=r"unknown dataset 'mnistt'; valid names: .*binarized-mnist"):
        load("mnistt")


def test_unknown_split_lists_splits():
    with pytest.raises(ConfigError, match="no split 'validation'; valid splits: train, valid, test"):
        load("digits", "validation")


def test_unknown_option():
    with pytest.raises(ConfigError, match=r"unknown option.*seq_len for moons; valid options: num_examples"):
        load("moons", seq_len=3)
    with pytest.raises(ConfigError, match="valid options: none"):
        load("digits", num_examples=3)


def test_name_normalisation():
    assert load("Digits_Binary", "test").name == "digits-binary"
