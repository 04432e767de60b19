"""Properties every registered model must have, run over the whole registry.

A model added to the registry is picked up here automatically: its `tiny` settings (from `register`)
are built for each support it declares, and the contract of DESIGN.md §1 is checked on fresh random
inputs: shapes, exact normalisation over all inputs for small D, agreement of samples with the
density, reproducible sampling, config and checkpoint round trips, and clear input errors.
"""

import inspect
import math

import numpy as np
import pytest
import torch

import dgm
from dgm.core.registry import get_entry
from tests.models.helpers import HostReads, all_configurations, perturb_parameters

SUPPORT_FOR = {"binary": "binary", "categorical": "categorical(3)", "real": "real"}


def cases() -> list:
    return list(_cases())


def _cases():
    for info in dgm.list_models():
        entry = get_entry(info["name"])
        if getattr(entry.cls, "discriminative", False):
            continue  # models p(y | x), not a density over x: tests/models/classic/test_logistic.py
        for kind in entry.supports:
            yield pytest.param(entry.name, SUPPORT_FOR[kind], id=f"{entry.name}-{kind}")


def event_shape_for(name: str, num_dims: int) -> tuple[int, ...]:
    """(D,) for vector models; a one-channel image with D pixels (two rows where D is even) otherwise."""
    if get_entry(name).shape == "vector":
        return (num_dims,)
    rows = 2 if num_dims % 2 == 0 else 1
    return (1, rows, num_dims // rows)


def make(name: str, support: str, num_dims: int, scale: float = 0.7):
    entry = get_entry(name)
    model = dgm.build(name, event_shape=event_shape_for(name, num_dims), support=support, **entry.tiny)
    perturb_parameters(model, scale)
    return model.double() if support == "real" else model


def random_inputs(support: str, n: int, d: int, name: str | None = None) -> torch.Tensor:
    shape = (d,) if name is None else event_shape_for(name, d)
    if support == "real":
        return torch.randn(n, *shape, dtype=torch.float64)
    k = 2 if support == "binary" else int(support[12:-1])
    return torch.randint(0, k, (n, *shape)).float()


def as_events(name: str, x: torch.Tensor) -> torch.Tensor:
    """Flat configurations (N, D) reshaped to the model's event shape."""
    return x.reshape(len(x), *event_shape_for(name, x.shape[1]))


@pytest.mark.parametrize(("name", "support"), cases())
def test_shapes_and_finite(name, support):
    model = make(name, support, 6)
    x = random_inputs(support, 17, 6, name)
    lp = model.log_prob(x)
    assert lp.shape == (17,) and torch.isfinite(lp).all()
    loss = model.loss(x)
    assert loss.dim() == 0
    loss.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
    s = model.sample(5)
    assert s.shape == (5, *event_shape_for(name, 6))
    model.validate(s)  # samples lie in the model's own support


def estimate_options(model, num_samples: int) -> dict:
    """log_prob options for a model whose log_prob is an importance-sampled estimate (``exact = False``).

    The estimate p̂(x) = (1/K) Σ w_k is unbiased for p(x) but only as good as its proposal: a randomly
    perturbed encoder q(z | x) can miss most of the posterior, and then the weights have infinite variance
    and no K gives a few-percent answer. The latent-variable models' ``prior_fraction`` draws half the
    samples from p(z) (a defensive mixture proposal, still unbiased): every weight is then at most
    2 p(x | z), and the checks below hold with the same perturbed models as every other model's.
    """
    options = {"num_samples": num_samples}
    if "prior_fraction" in inspect.signature(model.log_prob).parameters:
        options["prior_fraction"] = 0.5
    return options


@pytest.mark.parametrize(("name", "support"), [c for c in cases() if c.values[1] != "real"])
def test_normalisation_over_all_inputs(name, support):
    k = 2 if support == "binary" else 3
    d = 10 if k == 2 else 6
    x = as_events(name, all_configurations(d, k))
    if get_entry(name).cls.exact:
        model = make(name, support, d)
        total = torch.logsumexp(model.log_prob(x).double(), 0).exp().item()
        assert total == pytest.approx(1.0, abs=1e-5)
        return
    # An estimate: Σ_x p̂(x) is unbiased for 1 (each p̂(x) is unbiased for p(x)). With K = 2000 samples per
    # input the largest deviation measured over 30 seeds per model was 2.3% (typically < 1%), so 5% fails
    # on a wrong term (a missing log-density, a wrong log K), not on noise.
    model = make(name, support, d)
    total = torch.logsumexp(model.log_prob(x, **estimate_options(model, 2000)).double(), 0).exp().item()
    assert total == pytest.approx(1.0, abs=0.05)


@pytest.mark.parametrize(("name", "support"), [c for c in cases() if c.values[1] == "real"])
def test_density_integrates_to_one_in_1d(name, support):
    # x = sinh(t) on a uniform t grid: spacing ~1e-4 near 0, yet reaching ±5000, so that the wide
    # components random parameters can give (RNADE's σ up to e^7) lose no mass off the ends;
    # ∫ p(x) dx = ∫ p(sinh t) cosh t dt.
    t = torch.linspace(-math.asinh(5000.0), math.asinh(5000.0), 240_001, dtype=torch.float64)
    grid, jacobian = torch.sinh(t)[:, None], torch.cosh(t)
    if get_entry(name).cls.exact:
        model = make(name, support, 1)
        density = model.log_prob(as_events(name, grid)).exp()
        assert torch.trapezoid(density * jacobian, t).item() == pytest.approx(1.0, abs=1e-4)
        return
    # An estimate. Every grid point gets its own draws, so the trapezoid sum is a Monte Carlo integral of
    # E[p̂] = p over 240k points; with K = 8 the largest deviation over 30 seeds per model was 1.8%.
    model = make(name, support, 1)
    density = model.log_prob(as_events(name, grid), **estimate_options(model, 8)).exp()
    assert torch.trapezoid(density * jacobian, t).item() == pytest.approx(1.0, abs=0.05)


@pytest.mark.parametrize(("name", "support"), [c for c in cases() if c.values[1] != "real"])
def test_samples_match_density(name, support):
    k = 2 if support == "binary" else 3
    d = 3
    exact = get_entry(name).cls.exact
    model = make(name, support, d)
    configs = as_events(name, all_configurations(d, k))
    estimate_error = 0.0
    if exact:
        p = model.log_prob(configs).double().exp()
    else:
        # Two independent importance-sampled estimates: their mean is the density compared with, and
        # Σ|p̂1 − p̂2| (≈ 4x the expected Σ|mean − p|) bounds the part of the TV that is estimation error.
        # (A wrong term in the estimate is not noise: it moves both estimates alike and the TV catches it.)
        p1, p2 = (
            model.log_prob(
                configs, generator=torch.Generator().manual_seed(s), **estimate_options(model, 5000)
            )
            .double()
            .exp()
            for s in (1, 2)
        )
        p = (p1 + p2) / 2
        estimate_error = (p1 - p2).abs().sum().item()
    n = 40_000
    s = model.sample(n, generator=torch.Generator().manual_seed(0)).reshape(n, d)
    codes = (s.long() * (k ** torch.arange(d - 1, -1, -1))).sum(1)
    freq = torch.bincount(codes, minlength=k**d).double() / n
    tv = 0.5 * (freq - p).abs().sum().item()
    # E[TV] ≈ Σ sqrt(p(1-p)/n)·sqrt(2/π)/2; 4x that bound is a safe but sharp threshold.
    bound = 4 * 0.5 * math.sqrt(2 / math.pi) * (p * (1 - p) / n).sqrt().sum().item() + estimate_error
    assert tv < bound, (tv, bound)


@pytest.mark.parametrize(("name", "support"), cases())
def test_seeded_sampling_is_reproducible(name, support):
    # A small perturbation keeps the conditionals away from 0/1: a large one can make a deep model nearly
    # deterministic, and then two seeds may agree on every draw although seeding works.
    model = make(name, support, 5, scale=0.1)
    a = model.sample(200, generator=torch.Generator().manual_seed(3))
    b = model.sample(200, generator=torch.Generator().manual_seed(3))
    c = model.sample(200, generator=torch.Generator().manual_seed(4))
    assert torch.equal(a, b) and not torch.equal(a, c)


@pytest.mark.parametrize(("name", "support"), cases())
def test_config_and_checkpoint_round_trip(name, support, tmp_path):
    from dgm.core.checkpoint import save_model

    model = make(name, support, 7)
    rebuilt = dgm.build(model.config)
    assert rebuilt.config == model.config
    assert {k: v.shape for k, v in rebuilt.state_dict().items()} == {
        k: v.shape for k, v in model.state_dict().items()
    }
    save_model(model, tmp_path)
    loaded = dgm.load(tmp_path)
    x = random_inputs(support, 9, 7, name)
    assert torch.equal(model.log_prob(x), loaded.to(model.log_prob(x).dtype).log_prob(x))


@pytest.mark.parametrize(("name", "support"), cases())
def test_bad_inputs_raise_clear_errors(name, support):
    model = make(name, support, 4)
    shape = event_shape_for(name, 4)
    with pytest.raises(dgm.DataError, match="shape"):
        model.log_prob(torch.zeros(3, 5))
    with pytest.raises(dgm.DataError, match="batch dimension"):
        model.log_prob(torch.zeros(shape))
    with pytest.raises(dgm.DataError, match="NaN"):
        model.log_prob(torch.full((2, *shape), float("nan")))
    with pytest.raises(dgm.DataError, match="torch.Tensor"):
        model.log_prob(torch.zeros(1, *shape).tolist())
    if support != "real":
        with pytest.raises(dgm.DataError, match="non-integer"):
            model.log_prob(torch.full((2, *shape), 0.5))
        with pytest.raises(dgm.DataError, match="support"):
            model.log_prob(torch.full((2, *shape), 7.0))
    with pytest.raises(dgm.DataError, match="num_samples"):
        model.sample(-1)
    with pytest.raises(dgm.DataError, match="input is on meta but the model is on cpu"):
        model.log_prob(torch.zeros(2, *shape, device="meta"))


@pytest.mark.parametrize(("name", "support"), cases())
def test_empty_batches_and_zero_samples(name, support):
    model = make(name, support, 4)
    shape = event_shape_for(name, 4)
    lp = model.log_prob(random_inputs(support, 0, 4, name))
    assert lp.shape == (0,) and lp.dtype == next(model.parameters()).dtype
    with pytest.raises(dgm.DataError, match="shape"):  # still checked when empty
        model.log_prob(torch.zeros(0, 5))
    context = torch.zeros(0, dtype=torch.long) if getattr(model, "num_classes", None) else None
    assert model.sample(0, context=context).shape == (0, *shape)
    # Integers from NumPy or a 0-d tensor count as integers
    assert model.sample(np.int64(2), **_context_for(model, 2)).shape == (2, *shape)
    assert model.sample(torch.tensor(2), **_context_for(model, 2)).shape == (2, *shape)
    with pytest.raises(dgm.DataError, match="num_samples"):
        model.sample(2.5)


def _context_for(model, n: int) -> dict:
    return {"context": torch.arange(n) % model.num_classes} if getattr(model, "num_classes", None) else {}


@pytest.mark.parametrize(("name", "support"), cases())
def test_an_unconditional_model_refuses_a_context(name, support):
    model = make(name, support, 4)
    if model.conditional:
        pytest.skip("conditional as built")
    x = random_inputs(support, 2, 4, name)
    with pytest.raises(dgm.DataError, match="context"):
        model.log_prob(x, context=torch.zeros(2, dtype=torch.long))
    with pytest.raises(dgm.DataError, match="context"):
        model.sample(2, context=torch.zeros(2, dtype=torch.long))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize(("name", "support"), cases())
def test_every_model_on_cuda(name, support):
    """The same weights give the same log_prob on the GPU as on the CPU; samples come back on the GPU from a
    GPU generator, and a CPU generator is refused with a one-line error instead of torch's."""
    model = make(name, support, 4).eval()
    x = random_inputs(support, 5, 4, name)
    extra = _context_for(model, 5)
    with torch.no_grad():
        expected = model.log_prob(x, **extra)
        model.cuda()
        got = model.log_prob(x.cuda(), **{k: v.cuda() for k, v in extra.items()})
    assert got.device.type == "cuda" and got.shape == expected.shape
    if model.exact:
        torch.testing.assert_close(got.cpu(), expected, rtol=1e-3, atol=1e-3)
    else:  # an importance-sampled estimate: CUDA's random stream is not the CPU's
        assert torch.isfinite(got).all()
    with pytest.raises(dgm.DataError, match="input is on cpu but the model is on cuda"):
        model.log_prob(x, **{k: v.cuda() for k, v in extra.items()})
    if getattr(model, "discriminative", False):
        return
    context = {k: v.cuda() for k, v in _context_for(model, 3).items()}
    with torch.no_grad():
        s = model.sample(3, generator=torch.Generator(device="cuda").manual_seed(0), **context)
    assert s.device.type == "cuda" and s.shape == (3, *event_shape_for(name, 4))
    with pytest.raises(dgm.ConfigError, match="generator is on cpu"):
        model.sample(3, generator=torch.Generator().manual_seed(0), **context)


# Reads back to the host per training step beyond the trainer's one (loss, gradient norm and the model's
# figures, read together), where the model's algorithm needs them: each costs a wait on a GPU.
EXTRA_READS = {
    # the segment route's sizes depend on the data (the number of ones, their positions), and it checks
    # that the inputs are 0/1
    ("nade", "binary"): 3,
    ("gaussianization-flow", "real"): 2,  # the KDE's accuracy fix-ups run only where values need them
    # the class labels' check (one read), and the branches for labelled / unlabelled rows
    ("cvae", "binary"): 3,
    ("cvae", "categorical(3)"): 3,
    ("cvae", "real"): 3,
    ("ssvae", "binary"): 5,
    ("ssvae", "categorical(3)"): 5,
    ("ssvae", "real"): 5,
}


@pytest.mark.parametrize(("name", "support"), cases())
def test_a_training_step_reads_back_from_the_device_once(name, support, monkeypatch):
    """The trainer checks each batch on the CPU, then reads the step's figures back in one go; the model's
    own loss reads nothing back (on a GPU every read waits for the queue of work to drain: MADE 2×8000's
    step took 7.8 ms in the trainer against 5.6 ms alone, with 10 reads per step then)."""
    from dgm.training import trainer

    model = make(name, support, 6)
    if callable(getattr(model, "fit", None)):
        pytest.skip("fitted in closed form or by EM, not by gradient steps")
    steps = 4
    x = random_inputs(support, 10 * steps, 6, name)
    context = _context_for(model, len(x))
    data = (x, context["context"]) if context else x
    reads = HostReads()
    monkeypatch.setattr(trainer, "check_input", reads.paused(trainer.check_input))
    run = trainer.Trainer(
        model, data, progress=False, epochs=1, batch_size=10, seed=int(torch.randint(99, ()))
    )
    with reads:
        run.run()
    assert run.state.step == steps
    budget = steps * (1 + EXTRA_READS.get((name, support), 0)) + 1  # + 1: a value a model reads once
    assert reads.count <= budget, f"{reads.count} reads in {steps} steps: {reads.where}"


@pytest.mark.parametrize(("name", "support"), cases())
def test_sampling_with_a_progress_bar_draws_the_same(name, support):
    """`dgm sample` shows the sequential loops' progress; the bar must not change a single draw."""
    from dgm.core import progress

    model = make(name, support, 5)
    context = _context_for(model, 4)
    seed = int(torch.randint(2**31, ()))
    plain = model.sample(4, generator=torch.Generator().manual_seed(seed), **context)
    with progress.shown("sampling"):
        shown = model.sample(4, generator=torch.Generator().manual_seed(seed), **context)
    assert torch.equal(plain, shown)
