"""dgm.evaluation.speed: FLOPs counted as executed, timings on copies, rows for every kind of model."""

import pytest
import torch
from torch import nn

import dgm
from dgm.evaluation import speed


class LinearScore(nn.Module):
    """A stand-in with the model interface's ``loss``: one (D × H) product per example."""

    def __init__(self, D: int, H: int):
        super().__init__()
        self.W = nn.Parameter(torch.randn(D, H))

    def loss(self, x, context=None):
        return (x @ self.W).square().mean()


def test_step_flops_counts_the_products_as_executed():
    N, D, H = int(torch.randint(2, 9, ())), 12, 7
    # forward x W: 2NDH; backward: only W's gradient (x needs none), x^T dL/dy: 2NDH
    assert speed.step_flops(LinearScore(D, H), torch.randn(N, D)) == 4 * N * D * H


def test_a_timed_step_trains_a_copy_and_leaves_the_model_alone():
    model = dgm.build("made", event_shape=(16,), hidden_sizes=[32])
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.randint(0, 2, (20, 16)).float()
    assert speed.time_train_step(model, x, repeats=2) > 0
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_peak_rates_are_positive_rates():
    rates = speed.peak_rates(0.05, bf16=True)
    assert set(rates) == {"gflops", "bf16_gflops", "gbps"} and min(rates.values()) > 0


def test_benchmark_row_of_a_generative_and_a_discriminative_model():
    x = torch.randint(0, 2, (30, 16)).float()
    made = dgm.build("made", event_shape=(16,), hidden_sizes=[32])
    row = speed.benchmark(made, x, num_train=95, score=x, num_samples=4, peak={"gflops": 1.0})
    assert row["params"] == made.num_parameters()
    assert row["epoch_s_fp32"] == pytest.approx(4 * row["step_s_fp32"])  # 95 examples in batches of 30
    assert row["peak_share_fp32"] == pytest.approx(row["gflop_per_step"] / row["step_s_fp32"] / 1.0)
    assert row["log_prob_per_s"] > 0 and row["samples_per_s"] > 0
    assert made.training  # scored and sampled in eval mode, its own mode given back
    classifier = dgm.build("logistic-regression", event_shape=(16,), num_classes=3)
    y = torch.randint(0, 3, (30,))
    row = speed.benchmark(classifier, x, context=y, score=x, score_context=y, num_samples=4)
    assert "samples_per_s" not in row and row["step_s_fp32"] > 0 and row["log_prob_per_s"] > 0
