import math

import pytest
import torch

import dgm
from dgm.data.dataset import Dataset
from dgm.evaluation import bits_per_dim, log_prob_dataset


def test_evaluate_matches_log_prob_and_states_what_it_is():
    model = dgm.build("independent", event_shape=(12,))
    with torch.no_grad():
        model.logits.normal_()
    x = torch.randint(0, 2, (257, 12)).float()
    data = Dataset("toy", "test", x, support="binary", binarization="static")
    res = dgm.evaluate(model, data, batch_size=50)  # batches of uneven size
    lp = model.log_prob(x).double()
    assert res["nll"] == pytest.approx(-lp.mean().item(), rel=1e-9)
    assert res["nll_stderr"] == pytest.approx(lp.std().item() / math.sqrt(257), rel=1e-6)
    assert res["bits_per_dim"] == pytest.approx(res["nll"] / (12 * math.log(2)))
    assert (res["exact"], res["split"], res["binarization"], res["num_examples"]) == (
        True,
        "test",
        "static",
        257,
    )
    assert torch.allclose(log_prob_dataset(model, data, batch_size=7), lp)


def test_bits_per_dim_definition():
    assert bits_per_dim(784 * math.log(2), 784) == pytest.approx(1.0)


def test_empty_data_is_an_error():
    model = dgm.build("independent", event_shape=(3,))
    with pytest.raises(dgm.DataError, match="no examples"):
        dgm.evaluate(model, torch.zeros(0, 3))


def test_an_estimate_states_its_number_of_samples():
    model = dgm.build("vae", event_shape=(6,), **dgm.core.registry.get_entry("vae").tiny)
    x = torch.randint(0, 2, (8, 6)).float()
    default = dgm.evaluate(model, x)
    assert not default["exact"] and default["num_samples"] == model.default_num_samples
    assert dgm.evaluate(model, x, num_samples=7)["num_samples"] == 7
    exact = dgm.build("made", event_shape=(6,), hidden_sizes=[8])
    assert "num_samples" not in dgm.evaluate(exact, x)
