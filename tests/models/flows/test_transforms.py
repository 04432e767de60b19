"""Every flow transform: exact inverse, log|det J| against the brute-force autograd Jacobian, shapes.

Each case is perturbed off its (mostly identity) initialisation and checked on fresh random inputs, in
float32 (inverse to 1e-5) and float64 (inverse to 1e-10, log-dets to 1e-8 against autograd).
"""

import math

import pytest
import torch

import dgm
from dgm.core.errors import ConfigError, DataError
from dgm.models.flows.transforms import (
    ActNorm,
    AdditiveCoupling,
    AffineCoupling,
    BatchNorm,
    Compose,
    ElementwiseAffine,
    FactorOut,
    InverseTransform,
    Logit,
    LULinear,
    MaskedAffineAutoregressive,
    Permutation,
    RandomPermutation,
    Reshape,
    ReversePermutation,
    Sigmoid,
    Squeeze,
    alternating_mask,
    channel_mask,
    checkerboard_mask,
)
from dgm.models.flows.transforms.base import soft_clamp
from tests.models.flows.helpers import jacobian_log_det, perturb

CONV = {"hidden_channels": 4, "num_blocks": 1}


def multiscale_realnvp():
    return dgm.build("realnvp", event_shape=(1, 4, 4), num_scales=2, **CONV).transform


# name: (builder, input shape, input domain, context size[, perturbation scale, default 0.3])
CASES = {
    "affine": (lambda: ElementwiseAffine(5), (5,), "real", 0),
    "scaling": (lambda: ElementwiseAffine(5, shift=False), (5,), "real", 0),
    "scaling-data-init": (lambda: ElementwiseAffine(5, shift=False, data_init=1.8), (5,), "real", 0),
    "affine-per-channel": (lambda: ElementwiseAffine((2, 1, 1)), (2, 3, 3), "real", 0),
    "logit": (lambda: Logit(0.05), (5,), "unit", 0),
    "sigmoid": (Sigmoid, (5,), "real", 0),
    "additive-coupling": (
        lambda: AdditiveCoupling(alternating_mask(5, 0), hidden_sizes=[8]),
        (5,),
        "real",
        0,
    ),
    "affine-coupling": (lambda: AffineCoupling(alternating_mask(5, 1), hidden_sizes=[8, 8]), (5,), "real", 0),
    "affine-coupling-1d": (lambda: AffineCoupling(alternating_mask(1, 1), hidden_sizes=[8]), (1,), "real", 0),
    "affine-coupling-softsign": (
        lambda: AffineCoupling(
            alternating_mask(5, 0), hidden_sizes=[8], scale_clamp=2.0, scale_clamp_fn="softsign"
        ),
        (5,),
        "real",
        0,
    ),
    "affine-coupling-context": (
        lambda: AffineCoupling(alternating_mask(4, 0), hidden_sizes=[8], context_size=3),
        (4,),
        "real",
        3,
    ),
    "checkerboard-affine": (
        lambda: AffineCoupling(checkerboard_mask((2, 4, 4), 0), **CONV),
        (2, 4, 4),
        "real",
        0,
    ),
    "checkerboard-additive": (
        lambda: AdditiveCoupling(checkerboard_mask((1, 4, 4), 1), **CONV),
        (1, 4, 4),
        "real",
        0,
    ),
    "channel-affine-context": (
        lambda: AffineCoupling(channel_mask((4, 2, 2), 1), context_size=2, **CONV),
        (4, 2, 2),
        "real",
        2,
    ),
    "checkerboard-1x1": (
        lambda: AffineCoupling(checkerboard_mask((1, 1, 1), 1), **CONV),
        (1, 1, 1),
        "real",
        0,
    ),
    "permutation": (lambda: Permutation([2, 0, 3, 1, 4]), (5,), "real", 0),
    "reverse-permutation": (lambda: ReversePermutation(5), (5,), "real", 0),
    "random-permutation-channels": (lambda: RandomPermutation(3, seed=1), (3, 2, 2), "real", 0),
    "lu-linear": (lambda: LULinear(5), (5,), "real", 0),
    "lu-1x1-conv": (lambda: LULinear(3, seed=2), (3, 2, 2), "real", 0),
    "actnorm": (lambda: ActNorm(5), (5,), "real", 0),
    "actnorm-image": (lambda: ActNorm(2), (2, 3, 3), "real", 0),
    "batchnorm": (lambda: BatchNorm(5), (5,), "real", 0),
    "batchnorm-image": (lambda: BatchNorm(2), (2, 3, 3), "real", 0),
    "made-affine": (
        lambda: MaskedAffineAutoregressive(5, [16, 16], ordering="random", seed=3),
        (5,),
        "real",
        0,
    ),
    "made-affine-context": (
        lambda: MaskedAffineAutoregressive(4, [12], context_size=3, ordering="reverse"),
        (4,),
        "real",
        3,
    ),
    "made-affine-shift-after": (
        lambda: MaskedAffineAutoregressive(5, [16, 16], ordering="random", shift="after", seed=3),
        (5,),
        "real",
        0,
    ),
    "made-affine-1d": (lambda: MaskedAffineAutoregressive(1, [8]), (1,), "real", 0),
    "made-affine-softsign": (
        lambda: MaskedAffineAutoregressive(
            5, [16], scale_clamp=2.0, scale_clamp_fn="softsign", identity_init=False, shift="after", seed=1
        ),
        (5,),
        "real",
        0,
    ),
    "resmade-affine": (
        lambda: MaskedAffineAutoregressive(5, [16], residual_blocks=2, ordering="random", seed=3),
        (5,),
        "real",
        0,
    ),
    "resmade-affine-context": (
        lambda: MaskedAffineAutoregressive(4, [12], residual_blocks=1, context_size=3, shift="after"),
        (4,),
        "real",
        3,
    ),
    "made-affine-softplus": (
        lambda: MaskedAffineAutoregressive(
            5, [16, 16], scale_fn="softplus", identity_init=False, shift="after"
        ),
        (5,),
        "real",
        0,
    ),
    "resmade-affine-softplus-context": (
        lambda: MaskedAffineAutoregressive(4, [12], residual_blocks=1, context_size=3, scale_fn="softplus"),
        (4,),
        "real",
        3,
    ),
    "iaf-layer": (lambda: InverseTransform(MaskedAffineAutoregressive(5, [16])), (5,), "real", 0),
    "squeeze": (Squeeze, (1, 4, 4), "real", 0),
    "factor-out": (
        lambda: FactorOut((4, 2, 2), Compose([AffineCoupling(checkerboard_mask((2, 2, 2), 0), **CONV)])),
        (4, 2, 2),
        "real",
        0,
    ),
    "reshape": (lambda: Reshape((2, 3), (6,)), (2, 3), "real", 0),
    "compose": (
        lambda: Compose(
            [
                ElementwiseAffine(4),
                AffineCoupling(alternating_mask(4, 0), hidden_sizes=[8]),
                LULinear(4),
                MaskedAffineAutoregressive(4, [8]),
                BatchNorm(4),
                ActNorm(4),
            ]
        ),
        (4,),
        "real",
        0,
    ),
    # 14 couplings of ResNets: a smaller perturbation keeps their shifts (unclamped) of moderate size.
    "multiscale-realnvp": (multiscale_realnvp, (1, 4, 4), "real", 0, 0.1),
}


def prepare(name: str, dtype: torch.dtype):
    """The transform of case ``name``, perturbed, with random running statistics, in evaluation mode."""
    make, shape, domain, context_size, *scale = CASES[name]
    t = make().to(dtype)
    perturb(t, scale[0] if scale else 0.3)
    with torch.no_grad():
        for m in t.modules():
            if isinstance(m, ActNorm) or getattr(m, "data_init", None) is not None:
                m.initialized.fill_(True)
            if isinstance(m, BatchNorm):
                m.running_mean.normal_()
                m.running_var.uniform_(0.5, 2.0)
    return t.eval(), shape, domain, context_size


def inputs(shape, domain, n, dtype):
    x = torch.randn(n, *shape, dtype=dtype)
    return torch.sigmoid(x) if domain == "unit" else x


def contexts(context_size, n, dtype):
    return torch.randn(n, context_size, dtype=dtype) if context_size else None


@pytest.mark.parametrize(
    ("dtype", "tol"), [(torch.float32, 1e-5), (torch.float64, 1e-10)], ids=["f32", "f64"]
)
@pytest.mark.parametrize("name", list(CASES))
def test_inverse_undoes_forward(name, dtype, tol):
    t, shape, domain, context_size = prepare(name, dtype)
    x = inputs(shape, domain, 7, dtype)
    ctx = contexts(context_size, 7, dtype)
    z, log_det = t(x, ctx)
    assert z.dtype == dtype and log_det.shape == (7,) and torch.isfinite(log_det).all()
    assert tuple(z.shape[1:]) == t.output_shape(shape) and t.input_shape(t.output_shape(shape)) == shape
    back, inverse_log_det = t.inverse_and_log_det(z, ctx)
    atol = tol
    if dtype == torch.float32:
        # Each member's round trip holds to tol at the magnitudes it handles, and the members' errors add
        # up: values reach tens here, where a float32 ulp is ~2e-6. Against a flat 1e-5 the 6-member chain
        # failed on 1 % of random draws (5,000 measured) and the checkerboard affine coupling on 3 in 6,000
        # (z ≈ 18 from x ≈ 0.2: the inverse's z − shift cancels to 1.7e-5), never against this bound.
        members = t.transforms if isinstance(t, Compose) else [t]
        h, largest = x, x.abs().max().item()
        for member in members:
            h, _ = member(h, ctx)
            largest = max(largest, h.abs().max().item())
        atol = tol * len(members) * max(1.0, largest)
    torch.testing.assert_close(back, x, atol=atol, rtol=tol)
    torch.testing.assert_close(inverse_log_det, -log_det, atol=tol * 100, rtol=tol)
    torch.testing.assert_close(t.inverse(z, ctx), back)


@pytest.mark.parametrize("name", list(CASES))
def test_log_det_matches_autograd_jacobian(name):
    t, shape, domain, context_size = prepare(name, torch.float64)
    x = inputs(shape, domain, 3, torch.float64)
    ctx = contexts(context_size, 3, torch.float64)
    z, log_det = t(x, ctx)
    _, inverse_log_det = t.inverse_and_log_det(z, ctx)
    for i in range(3):
        c = None if ctx is None else ctx[i : i + 1]
        expected = jacobian_log_det(lambda v, c=c: t(v, c)[0], x[i])
        torch.testing.assert_close(log_det[i], expected, atol=1e-8, rtol=1e-8)
        expected = jacobian_log_det(lambda v, c=c: t.inverse(v, c), z[i])
        torch.testing.assert_close(inverse_log_det[i], expected, atol=1e-8, rtol=1e-8)


# ---------------------------------------------------------------------------------- masks, shapes
def test_masks():
    assert alternating_mask(5, 0).tolist() == [False, True, False, True, False]
    assert alternating_mask(5, 1).tolist() == [True, False, True, False, True]
    assert alternating_mask(1, 0).tolist() == alternating_mask(1, 1).tolist() == [False]  # nothing to keep
    board = checkerboard_mask((2, 3, 3), 0)
    assert board.shape == (2, 3, 3) and torch.equal(board[0], board[1])
    assert board[0].tolist() == [[False, True, False], [True, False, True], [False, True, False]]
    assert torch.equal(checkerboard_mask((2, 3, 3), 1), ~board)
    channels = channel_mask((4, 2, 2), 0)
    assert channels[:, 0, 0].tolist() == [True, True, False, False] and channels.flatten(1).all(1).any()
    assert not channel_mask((1, 2, 2), 1).any()
    with pytest.raises(ConfigError, match="keeps every value"):
        AffineCoupling(torch.ones(3, dtype=torch.bool))


def test_squeeze_moves_each_2x2_block_into_channels():
    x = torch.arange(16.0).reshape(1, 1, 4, 4)
    z, log_det = Squeeze()(x)
    assert z.shape == (1, 4, 2, 2) and log_det.item() == 0
    assert sorted(z[0, :, 0, 0].tolist()) == [0.0, 1.0, 4.0, 5.0]  # the top-left block
    with pytest.raises(DataError, match="divisible"):
        Squeeze()(torch.zeros(1, 1, 3, 4))


def test_factor_out_sends_half_the_channels_to_the_latent_unchanged():
    inner = Compose([AffineCoupling(checkerboard_mask((2, 2, 2), 0), **CONV)])
    perturb(inner)
    t = FactorOut((4, 2, 2), inner)
    x = torch.randn(3, 4, 2, 2)
    z, log_det = t(x)
    assert z.shape == (3, 16) and t.output_shape((4, 2, 2)) == (16,)
    assert torch.equal(z[:, :8], x[:, :2].reshape(3, -1))
    inner_z, inner_log_det = inner(x[:, 2:])
    assert torch.equal(z[:, 8:], inner_z.reshape(3, -1)) and torch.equal(log_det, inner_log_det)


# ---------------------------------------------------------------------------------- couplings
def test_coupling_on_one_value_is_a_learned_affine_map():
    t = AffineCoupling(alternating_mask(1, 0), hidden_sizes=[8], context_size=2).double()
    perturb(t, 0.5)
    x = torch.linspace(-3, 3, 7, dtype=torch.float64)[:, None]
    ctx = torch.randn(1, 2, dtype=torch.float64).expand(7, 2)
    z, log_det = t(x, ctx)
    slope = (z[1:] - z[:-1]) / (x[1:] - x[:-1])
    torch.testing.assert_close(slope, slope[:1].expand_as(slope))  # z = a·x + b: linear in x
    torch.testing.assert_close(log_det, slope[0].log().expand(7))
    assert not torch.equal(t(x, ctx + 1)[0], z)  # the context still shapes the map


def test_soft_clamp_bounds_the_log_scale():
    t = AffineCoupling(alternating_mask(6, 0), hidden_sizes=[8], scale_clamp=2.0)
    perturb(t, 50.0)
    x = torch.randn(20, 6) * 1e4
    z, log_det = t(x)
    assert torch.isfinite(z).all() and (log_det.abs() <= 2.0 * 3 + 1e-3).all()


@pytest.mark.parametrize("fn", ["tanh", "softsign"])
def test_soft_clamp_is_odd_bounded_and_the_identity_near_zero(fn):
    s = torch.randn(1000, dtype=torch.float64) * 10 ** torch.empty(1000, dtype=torch.float64).uniform_(-3, 4)
    c = float(torch.empty(()).uniform_(0.5, 8.0))
    out = soft_clamp(s, c, fn)
    assert (out.abs() <= c).all()  # tanh reaches c itself once s / c > 19 in float64
    torch.testing.assert_close(soft_clamp(-s, c, fn), -out)
    small = s.abs() < 1e-3 * c
    torch.testing.assert_close(out[small], s[small], rtol=1e-3, atol=0.0)
    assert (torch.diff(soft_clamp(s.sort().values, c, fn)) >= 0).all()  # monotone, so invertible
    expected = c * torch.tanh(s / c) if fn == "tanh" else s / (1 + s.abs() / c)  # zuko's form
    torch.testing.assert_close(out, expected)
    assert torch.equal(soft_clamp(s, None, fn), s)
    with pytest.raises(ConfigError, match="one of tanh, softsign"):
        soft_clamp(s, c, "sigmoid")


def test_softsign_clamp_is_what_the_layers_apply():
    """scale_clamp_fn='softsign' bounds the very log-scales the layers' maps and log-dets use."""
    made = MaskedAffineAutoregressive(4, [12], scale_clamp=1.5, scale_clamp_fn="softsign", seed=4).double()
    perturb(made, 2.0)
    x = 3 * torch.randn(9, 4, dtype=torch.float64)
    out = made.conditioner(x, None)
    alpha = out[:, 1] / (1 + out[:, 1].abs() / 1.5)
    z, log_det = made(x)
    torch.testing.assert_close(z, (x - out[:, 0]) * torch.exp(-alpha))
    torch.testing.assert_close(log_det, -alpha.sum(1))
    coupling = AffineCoupling(
        alternating_mask(4, 0), hidden_sizes=[8], scale_clamp=1.5, scale_clamp_fn="softsign"
    )
    coupling = coupling.double()
    perturb(coupling, 5.0)
    assert coupling(x * 1e3)[1].abs().max() < 1.5 * 2  # two transformed coordinates, each |s| < c
    for make in (
        lambda: MaskedAffineAutoregressive(4, [12], scale_clamp_fn="rational"),
        lambda: AffineCoupling(alternating_mask(4, 0), scale_clamp_fn="rational"),
    ):
        with pytest.raises(ConfigError, match="scale_clamp_fn must be one of tanh, softsign"):
            make()
    with pytest.raises(ConfigError, match="scale_clamp must be positive"):
        MaskedAffineAutoregressive(4, [12], scale_clamp=0.0)


def test_conditional_transform_needs_its_context():
    t = AffineCoupling(alternating_mask(4, 0), context_size=3)
    with pytest.raises(DataError, match="pass a context"):
        t(torch.zeros(2, 4))
    with pytest.raises(DataError, match=r"shape \(N, 3\)"):
        t(torch.zeros(2, 4), torch.zeros(2, 2))
    unconditional = AffineCoupling(alternating_mask(4, 0))
    x = torch.randn(2, 4)
    assert torch.equal(unconditional(x, torch.ones(2, 3))[0], unconditional(x)[0])  # a context is ignored


# -------------------------------------------------------------------------------- autoregressive
@pytest.mark.parametrize("shift", ["before", "after"])
def test_autoregressive_inverse_paths_agree_and_cost_d_passes(shift):
    layer = MaskedAffineAutoregressive(6, [16], ordering="random", shift=shift, seed=1).double()
    perturb(layer, 0.5)
    calls = []
    layer.conditioner.register_forward_hook(lambda *args: calls.append(1))
    z = torch.randn(5, 6, dtype=torch.float64)
    with torch.no_grad():
        fast, fast_log_det = layer.inverse_and_log_det(z)  # position by position, incremental
    assert not calls
    slow, slow_log_det = layer.inverse_and_log_det(z.requires_grad_())  # D full passes, differentiable
    assert len(calls) == 6
    torch.testing.assert_close(fast, slow.detach(), atol=1e-12, rtol=1e-12)
    torch.testing.assert_close(fast_log_det, slow_log_det.detach(), atol=1e-12, rtol=1e-12)
    calls.clear()
    layer(fast)
    assert len(calls) == 1  # the density direction: one pass


def test_residual_made_layer_inverse_paths_agree():
    layer = MaskedAffineAutoregressive(6, [16], residual_blocks=2, ordering="random", shift="after", seed=1)
    layer = layer.double()
    perturb(layer, 0.5)
    calls = []
    layer.conditioner.register_forward_hook(lambda *args: calls.append(1))
    z = torch.randn(5, 6, dtype=torch.float64)
    with torch.no_grad():
        fast, fast_log_det = layer.inverse_and_log_det(z)  # unit by unit, one evaluation in all
    assert not calls
    slow, slow_log_det = layer.inverse_and_log_det(z.requires_grad_())
    torch.testing.assert_close(fast, slow.detach(), atol=1e-12, rtol=1e-12)
    torch.testing.assert_close(fast_log_det, slow_log_det.detach(), atol=1e-12, rtol=1e-12)
    back, log_det = layer(fast)
    torch.testing.assert_close(back, z.detach(), atol=1e-10, rtol=1e-10)
    torch.testing.assert_close(log_det, -fast_log_det, atol=1e-10, rtol=1e-10)


def test_options_that_shape_the_made_refuse_a_given_conditioner():
    made = MaskedAffineAutoregressive(3, [8]).conditioner
    for options, message in [
        ({"shift": "after"}, "shift='after'"),
        ({"residual_blocks": 1}, "residual_blocks"),
        ({"identity_init": False}, "identity_init"),
    ]:
        with pytest.raises(ConfigError, match=message):
            MaskedAffineAutoregressive(3, conditioner=made, **options)


@pytest.mark.parametrize("residual_blocks", [0, 2])
def test_autoregressive_layer_is_triangular_in_its_ordering(residual_blocks):
    if residual_blocks:
        layer = MaskedAffineAutoregressive(5, [20], residual_blocks=2, ordering="random", seed=4).double()
    else:
        layer = MaskedAffineAutoregressive(5, [20, 20], ordering="random", seed=4).double()
    perturb(layer, 0.5)
    x = torch.randn(5, dtype=torch.float64)
    jac = torch.autograd.functional.jacobian(lambda v: layer(v[None])[0][0], x)
    order = layer.ordering
    permuted = jac[order][:, order]  # rows and columns in the ordering
    assert torch.equal(permuted.triu(1), torch.zeros_like(permuted))
    assert (permuted.tril(-1) != 0).any() and (permuted.diagonal() > 0).all()


# ---------------------------------------------------------------------------------- normalisation
def test_actnorm_initialises_from_the_first_training_batch():
    t = ActNorm(3)
    x = torch.randn(500, 3, 2, 2) * torch.tensor([1.0, 5.0, 0.1])[:, None, None] + 7
    t.eval()
    assert torch.equal(t(x)[0], x) and not t.initialized  # no initialisation in evaluation mode
    t.train()
    z, _ = t(x)
    torch.testing.assert_close(z.mean((0, 2, 3)), torch.zeros(3), atol=1e-4, rtol=0)
    torch.testing.assert_close(z.std((0, 2, 3), correction=0), torch.ones(3), atol=1e-4, rtol=0)
    assert t.initialized and "initialized" in t.state_dict()
    loc = t.loc.detach().clone()
    t(x * 3)
    assert torch.equal(t.loc, loc)  # once only


@pytest.mark.parametrize("shift", [False, True])
def test_elementwise_affine_data_init_scales_the_first_training_batch(shift):
    t = ElementwiseAffine((3, 1, 1), shift=shift, data_init=1.8).double()
    x = torch.rand(400, 3, 2, 2, dtype=torch.float64) * torch.tensor([1.0, 5.0, 0.004])[:, None, None] + 0.5
    t.eval()
    assert torch.equal(t(x)[0], x) and not t.initialized  # no initialisation in evaluation mode
    t.train()
    z, log_det = t(x)
    target = torch.full((3,), 1.8, dtype=torch.float64)
    if shift:  # mean 0, standard deviation 1.8 per channel
        torch.testing.assert_close(z.mean((0, 2, 3)), torch.zeros_like(target), atol=1e-8, rtol=0)
        torch.testing.assert_close(z.std((0, 2, 3), correction=0), target, rtol=1e-5, atol=0)
    else:  # no shift to centre with: root mean square 1.8
        torch.testing.assert_close(z.square().mean((0, 2, 3)).sqrt(), target, rtol=1e-5, atol=0)
    torch.testing.assert_close(log_det, torch.full((400,), 4 * t.log_scale.sum().item(), dtype=torch.float64))
    assert t.initialized and "initialized" in t.state_dict()
    scale = t.log_scale.detach().clone()
    t(x * 3)
    assert torch.equal(t.log_scale, scale)  # once only
    assert "initialized" not in ElementwiseAffine(3).state_dict()  # the plain layer keeps its keys
    with pytest.raises(ConfigError, match="data_init"):
        ElementwiseAffine(3, data_init=0.0)


def test_batchnorm_uses_batch_statistics_in_training_and_running_averages_in_evaluation():
    t = BatchNorm(2, momentum=0.5)
    x = torch.randn(1000, 2) * torch.tensor([2.0, 0.5]) + torch.tensor([1.0, -3.0])
    z, log_det = t(x)
    torch.testing.assert_close(z.mean(0), torch.zeros(2), atol=1e-5, rtol=0)
    torch.testing.assert_close(z.std(0, correction=0), torch.ones(2), atol=1e-3, rtol=0)
    var = x.var(0, correction=0)
    torch.testing.assert_close(log_det[0], -0.5 * torch.log(var + t.eps).sum())
    torch.testing.assert_close(t.running_mean, 0.5 * x.mean(0))  # from 0 halfway to the batch mean
    t.eval()
    z_eval, _ = t(x[:3])
    expected = (x[:3] - t.running_mean) / torch.sqrt(t.running_var + t.eps)
    torch.testing.assert_close(z_eval, expected)


def test_lu_linear_log_det_is_that_of_its_matrix():
    t = LULinear(6, seed=3).double()
    perturb(t)
    torch.testing.assert_close(torch.linalg.slogdet(t.weight())[1], t.log_abs_s.sum())


# ---------------------------------------------------------------------------------- logit, sigmoid
def test_logit_refuses_data_outside_the_unit_interval_and_stays_finite_at_its_ends():
    t = Logit(1e-6)
    with pytest.raises(DataError, match=r"\[0, 1\]"):
        t(torch.tensor([[0.5, 1.5]]))
    z, log_det = t(torch.tensor([[0.0, 1.0]]))
    assert torch.isfinite(z).all() and torch.isfinite(log_det).all()
    with pytest.raises(DataError, match=r"\(0, 1\)"):
        Sigmoid().inverse(torch.tensor([[0.0]]))


def test_logit_scores_its_own_saturated_samples():
    """float32 rounds σ(z) to 1 above z ≈ 17: the inverse then returns a point one rounding step past the
    bijection's range, which the forward must still accept (finite), so a flow can score its samples."""
    t = Logit(1e-6)
    z = torch.tensor([[-120.0, -30.0, 0.3, 30.0, 120.0]])
    x = t.inverse(z)
    back, log_det = t(x)
    assert torch.isfinite(back).all() and torch.isfinite(log_det).all()
    torch.testing.assert_close(back[:, 2], z[:, 2])
    assert back[0, 3] > 15 and back[0, 1] < -15  # saturated values stay saturated, on the right side


@pytest.mark.parametrize("residual_blocks", [0, 1])
def test_softplus_scale_is_nflows_parametrisation(residual_blocks):
    """scale_fn='softplus': z = x · (softplus(α̂) + 10⁻³) + m from the MADE's outputs (m, α̂), log-det the sum
    of the log-scales; identity_init zeroes the last layer (a start at softplus(0) + 10⁻³ everywhere),
    identity_init=False keeps PyTorch's default there."""
    options = dict(residual_blocks=residual_blocks, scale_fn="softplus", shift="after", ordering="random")
    layer = MaskedAffineAutoregressive(5, [16], identity_init=False, seed=2, **options).double()
    assert layer.conditioner.layers[-1].weight.abs().sum() > 0
    x = 5 * torch.randn(7, 5, dtype=torch.float64)
    out = layer.conditioner(x, None)
    scale = torch.nn.functional.softplus(out[:, 1]) + 1e-3
    z, log_det = layer(x)
    torch.testing.assert_close(z, x * scale + out[:, 0])
    torch.testing.assert_close(log_det, scale.log().sum(1))
    start = MaskedAffineAutoregressive(5, [16], seed=2, **options).double()
    torch.testing.assert_close(start(x)[0], x * (math.log(2) + 1e-3))
    with pytest.raises(ConfigError, match="scale_fn"):
        MaskedAffineAutoregressive(5, [16], scale_fn="sigmoid")
    with pytest.raises(ConfigError, match="identity_init"):
        MaskedAffineAutoregressive(5, [16], identity_init="no")


def test_shift_after_scale_is_the_same_map_reparametrised():
    """shift='after' computes z = x · exp(−α) + m from the MADE's outputs (m, α̂): the paper's
    (x − μ) · exp(−α) with μ = −m · exp(α), and the same log-det −Σα."""
    layer = MaskedAffineAutoregressive(5, [16], ordering="random", shift="after", seed=2).double()
    perturb(layer, 0.5)
    x = torch.randn(7, 5, dtype=torch.float64)
    out = layer.conditioner(x, None)
    m, alpha = out[:, 0], soft_clamp(out[:, 1], layer.scale_clamp)
    z, log_det = layer(x)
    torch.testing.assert_close(z, x * torch.exp(-alpha) + m)
    torch.testing.assert_close(log_det, -alpha.sum(1))
    before = MaskedAffineAutoregressive(5, [16], ordering="random", shift="before", seed=2).double()
    before.load_state_dict(layer.state_dict())
    torch.testing.assert_close(before(x)[0], (x - m) * torch.exp(-alpha))  # the paper's form reads m as μ
    with pytest.raises(ConfigError, match="shift"):
        MaskedAffineAutoregressive(5, [16], shift="middle")
    with pytest.raises(ConfigError, match="shift"):
        MaskedAffineAutoregressive(5, shift="after", conditioner=torch.nn.Identity())
