"""Checks shared by the autoregressive model tests: the autoregressive property and recovery of a target."""

import torch

import dgm
from tests.models.helpers import all_configurations, perturb_parameters


def dependence(model, context=None, tries: int = 3) -> torch.Tensor:
    """For a pixel model (``model.logits``): dep[i, j] says the logits of value i depend on value j, both in
    raster order (row, column, channel).

    Categorical logits are projected on a random vector (one backward pass per value); the result is the
    union over ``tries`` random inputs, so an accidental zero gradient does not pass for a structural one.
    """
    C, H, W = model.event_shape
    k = model.num_categories
    proj = torch.randn(k, dtype=torch.float64)

    def f(inp):
        logits = model.logits(inp, context)
        return logits if logits.dim() == 4 else logits @ proj

    D = C * H * W
    dep = torch.zeros(D, D, dtype=torch.bool)
    for _ in range(tries):
        inp = torch.randint(0, k, (1, C, H, W)).double()
        J = torch.autograd.functional.jacobian(f, inp)[0, :, :, :, 0]  # (C,H,W, C,H,W)
        dep |= (J != 0).permute(1, 2, 0, 4, 5, 3).reshape(D, D)
    return dep


def full_dependence(model, rounds: int = 3) -> torch.Tensor:
    """:func:`dependence` unioned over ``rounds`` draws of the weights (each moved by fresh noise).

    For the *presence* of a dependence: with ReLUs (PixelCNN's layers, both models' output heads), one
    weight draw can leave every path from one pixel to another inactive on all of a few inputs (about 1 run
    in 250 for a 5×5 Gated PixelCNN), a zero by accident; fresh weights keep the masks, so a zero that
    survives them is structural."""
    dep = dependence(model)
    for _ in range(rounds - 1):
        perturb_parameters(model, 0.3)
        dep |= dependence(model)
    return dep


def positions_of(ordering) -> torch.Tensor:
    """pos[d] = position of dimension d in ``ordering``."""
    ordering = torch.as_tensor(ordering)
    pos = torch.empty_like(ordering)
    pos[ordering] = torch.arange(len(ordering))
    return pos


def params_jacobian(params_fn, x: torch.Tensor) -> torch.Tensor:
    """d params[i, p] / d x[j], shape (D, P, D), for one example x (D,); ``params_fn``: (1, D) → (1, D, P)."""
    return torch.autograd.functional.jacobian(lambda v: params_fn(v[None])[0], x)


def assert_autoregressive(jac: torch.Tensor, ordering) -> None:
    """``jac`` (D, P, D): output i's parameters against input j; zero wherever pos(j) >= pos(i)."""
    pos = positions_of(ordering)
    forbidden = pos[None, :] >= pos[:, None]  # (i, j)
    leaks = jac.abs().amax(1)[forbidden]
    assert torch.all(leaks == 0), f"{int((leaks != 0).sum())} dependencies on current or later inputs"
    allowed = ~forbidden
    if allowed.any():  # the check is not vacuous: some allowed dependencies are present
        assert jac.abs().amax(1)[allowed].max() > 0


def assert_autoregressive_by_perturbation(params_fn, x: torch.Tensor, ordering, k: int) -> None:
    """For discrete inputs (one-hot, no gradient): changing x_j leaves every conditional i with
    pos(i) <= pos(j) unchanged, exactly. ``params_fn(x)`` returns (N, D, ...) per-dimension parameters."""
    pos = positions_of(ordering)
    base = params_fn(x)
    for j in range(x.shape[1]):
        y = x.clone()
        y[:, j] = (y[:, j] + 1) % k
        changed = (params_fn(y) - base).reshape(len(x), x.shape[1], -1).abs().amax((0, 2))
        must_stay = pos <= pos[j]
        assert torch.all(changed[must_stay] == 0), (j, changed)


def recovers_target(name: str, options: dict, target=None, seed: int = 0, epochs: int = 60) -> float:
    """Train with ``dgm.train`` on 5000 draws from a 4-dim binary distribution (``target``, 16 probabilities
    over the configurations in lexicographic order; by default a fixed random one); return the TV distance
    between the trained model's exact distribution and the target."""
    g = torch.Generator().manual_seed(seed)
    configs = all_configurations(4)
    if target is None:  # correlated: most mass on a few patterns, a little everywhere
        target = torch.softmax(torch.randn(16, generator=g) * 1.5, 0)
    idx = torch.multinomial(target, 5000, replacement=True, generator=g)
    data = configs[idx]
    torch.manual_seed(seed)
    model = dgm.build(name, event_shape=(4,), **options)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny tensors: thread hand-offs would cost more than the arithmetic
    try:
        dgm.train(
            model,
            data[:4000],
            data[4000:],
            epochs=epochs,
            lr=0.02,
            batch_size=200,
            patience=10,
            progress=False,
        )
    finally:
        torch.set_num_threads(threads)
    with torch.no_grad():
        learned = model.log_prob(configs).double().exp()
    assert abs(learned.sum().item() - 1) < 1e-5
    return 0.5 * (learned - target.double()).abs().sum().item()
