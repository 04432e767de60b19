"""Masked layers and MADE degrees: masks, connectivity, the autoregressive property, generation."""

import pytest
import torch
import torch.nn.functional as F

import dgm
from dgm import ConfigError
from dgm.nn import masked
from dgm.nn.masked import (
    DegreeMask,
    MaskedLinear,
    MaskedMLP,
    ResidualMaskedMLP,
    input_degrees,
    made_degrees,
    made_masks,
    make_ordering,
    random_ordering,
)
from tests.models.autoregressive.helpers import assert_autoregressive, positions_of


def test_masked_linear_applies_mask_without_touching_weights():
    mask = (torch.rand(5, 7) < 0.5).float()
    layer = MaskedLinear(7, 5, mask)
    before = layer.weight.detach().clone()
    x = torch.randn(4, 7, requires_grad=True)
    y = layer(x)
    assert torch.equal(y, F.linear(x, before * mask, layer.bias))
    y.sum().backward()
    assert torch.equal(layer.weight, before)  # forward never writes to the weight
    assert torch.all(layer.weight.grad[mask == 0] == 0)
    other = torch.ones(5, 7)
    assert torch.allclose(layer(x, other), F.linear(x, before, layer.bias))
    assert torch.equal(layer.mask, mask)  # a per-call mask leaves the stored one alone
    assert "mask" in layer.state_dict()
    with pytest.raises(ConfigError, match="shape"):
        layer.set_mask(torch.ones(7, 5))


def _degree_mask(n_out: int, n_in: int, strict: bool) -> DegreeMask:
    # Random degrees in 1..5, with one connection and one cut pinned: with all of them random, about one
    # seed in 10^4 gave every output a degree at or above every input's, an all-ones mask
    # (DGM_TEST_SEED=2307).
    d_out, d_in = torch.randint(1, 6, (n_out,)), torch.randint(1, 6, (n_in,))
    d_out[:2], d_in[:2] = torch.tensor([1, 5]), torch.tensor([5, 1])
    return DegreeMask(d_out, d_in, strict)


@pytest.mark.parametrize("strict", [False, True])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_masked_linear_with_degree_masks_equals_the_dense_product(strict, dtype):
    """Values and gradients (input, weight, bias) equal those of F.linear(x, W ⊙ M); masked-out weights
    get exactly zero gradient."""
    mask = _degree_mask(6, 9, strict)
    dense = mask.dense(dtype)
    assert dense.sum() > 0 and (dense == 0).any()
    w = torch.randn(6, 9, dtype=dtype, requires_grad=True)
    b = torch.randn(6, dtype=dtype, requires_grad=True)
    x = torch.randn(3, 4, 9, dtype=dtype, requires_grad=True)  # any leading shape
    g = torch.randn(3, 4, 6, dtype=dtype)
    grads = []
    for fn in (lambda: masked.masked_linear(x, w, mask, b), lambda: F.linear(x, w * dense, b)):
        y = fn()
        grads.append((y, *torch.autograd.grad(y, (x, w, b), g)))
    for ours, reference in zip(*grads, strict=True):
        assert ours.dtype == dtype
        torch.testing.assert_close(ours, reference)
    assert torch.all(grads[0][2][dense == 0] == 0)
    # A dense 0/1 mask takes the same path's other branch.
    y = masked.masked_linear(x, w, dense, b)
    torch.testing.assert_close(y, grads[1][0])


def test_masked_linear_under_bf16_autocast_matches_autocast_linear():
    mask = _degree_mask(16, 24, False)
    w = torch.randn(16, 24, requires_grad=True)
    x = torch.randn(5, 24)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = masked.masked_linear(x, w, mask)
        reference = F.linear(x, w * mask.dense())
    assert y.dtype == reference.dtype == torch.bfloat16
    torch.testing.assert_close(y, reference)
    (grad,) = torch.autograd.grad(y.float().sum(), w)
    assert grad.dtype == torch.float32  # the parameter's dtype, masked as it is cast back
    assert torch.all(grad[mask.dense() == 0] == 0)


def test_fused_mask_kernel_matches_eager_and_falls_back(monkeypatch):
    """The compiled kernel (used for wide layers) gives exactly the eager result; a kernel that fails is
    dropped with one warning and the eager path takes over."""
    monkeypatch.setattr(masked, "FUSED_MIN_NUMEL", 0)
    monkeypatch.setattr(masked, "_fused_kernels", {})
    mask = _degree_mask(40, 30, True)
    w = torch.randn(40, 30)
    eager = (w * mask.dense()).to(torch.bfloat16)
    assert torch.equal(masked._apply_degree_mask(w, mask, torch.bfloat16), eager)

    def broken(*args):
        raise RuntimeError("no compiler")

    key = ("cpu", torch.float32, torch.bfloat16)
    monkeypatch.setattr(masked, "_fused_kernels", {key: broken})
    with pytest.warns(UserWarning, match="fused mask kernel unavailable"):
        assert torch.equal(masked._apply_degree_mask(w, mask, torch.bfloat16), eager)
    assert masked._fused_kernels[key] is None
    monkeypatch.setenv("DGM_FUSED_MASKS", "0")
    monkeypatch.setattr(masked, "_fused_kernels", {})
    assert masked._fused(key) is None


def test_fused_training_steps_compile_once_and_match_eager(monkeypatch):
    """A training step under bf16 autocast, its backward and an fp32 evaluation, over several masks and
    batch sizes, give the eager path's values and gradients, and after the first pass nothing recompiles
    (a kernel past dynamo's recompile limit would silently run uncompiled)."""
    import torch._dynamo

    net = MaskedMLP(
        9,
        [12, 10],
        num_inputs_per_dim=2,
        num_masks=4,
        order_agnostic=True,
        connectivity_agnostic=True,
        direct_connection=True,
    )
    monkeypatch.setattr(masked, "_fused_kernels", {})

    def run(m: int, n: int):
        x = torch.randn(n, 18)
        out = []
        for threshold in (0, 1 << 40):  # every layer fused, then every layer eager
            monkeypatch.setattr(masked, "FUSED_MIN_NUMEL", threshold)
            net.zero_grad()
            with torch.autocast("cpu", dtype=torch.bfloat16):
                y = net(x, mask_index=m)
            y.float().square().sum().backward()
            with torch.no_grad():
                z = net(x, mask_index=m)
            out.append([y, z, *(p.grad.clone() for p in net.parameters())])
        for fused, eager in zip(*out, strict=True):
            torch.testing.assert_close(fused, eager)

    run(0, 5)
    run(1, 7)
    kernels = masked._fused_kernels
    f32, bf16 = torch.float32, torch.bfloat16
    # (input, output): the forward's fp32 → bf16, the backward's bf16 → fp32, evaluation fp32 → fp32
    assert {key[1:] for key in kernels} == {(f32, bf16), (bf16, f32), (f32, f32)}
    if any(k is None for k in kernels.values()):  # fell back (with a warning): nothing compiled to check
        pytest.skip("torch.compile cannot build kernels on this machine (DGM_FUSED_MASKS=0 or no compiler)")
    with torch._dynamo.config.patch(error_on_recompile=True):
        for m, n in ((2, 3), (3, 11), (0, 4)):
            run(m, n)


def test_degree_masks_are_the_dense_masks():
    net = MaskedMLP(
        7,
        [10, 8],
        num_inputs_per_dim=2,
        num_outputs_per_dim=3,
        num_masks=3,
        order_agnostic=True,
        connectivity_agnostic=True,
        direct_connection=True,
    )
    ordering = random_ordering(7)
    for m in range(3):
        for o in (None, ordering):
            dense = [*net.masks(m, o), net.direct_mask(m, o)]
            degree = net.degree_masks(m, o)
            assert len(degree) == len(dense)
            for a, b in zip(degree, dense, strict=True):
                assert torch.equal(a.dense(), b)


def test_degrees_and_masks_follow_the_paper():
    D = 9
    order = random_ordering(D)
    degrees = made_degrees(order, [20, 15], generator=torch.Generator().manual_seed(0))
    assert torch.equal(degrees[0][order], torch.arange(1, D + 1))  # input degree = position + 1
    for d in degrees[1:]:
        assert d.min() >= 1 and d.max() <= D - 1
    assert degrees[2].min() >= degrees[1].min()  # no unit below the previous layer's smallest degree
    masks = made_masks(degrees)
    assert torch.equal(masks[0], (degrees[1][:, None] >= degrees[0][None, :]).float())
    assert torch.equal(masks[1], (degrees[2][:, None] >= degrees[1][None, :]).float())
    assert torch.equal(masks[2], (degrees[0][:, None] > degrees[2][None, :]).float())  # strict
    even = made_degrees(order, [16], mode="even")[1]
    assert torch.equal(even, torch.arange(16) % (D - 1) + 1)
    # D = 1: no input may reach a hidden unit; the single output is a constant.
    one = made_degrees(torch.zeros(1, dtype=torch.long), [4])
    assert torch.equal(made_masks(one)[0], torch.zeros(4, 1)) and made_masks(one)[1].all()


@pytest.mark.parametrize("hidden", [[], [13], [11, 9, 12]])
def test_connectivity_product_is_strictly_autoregressive(hidden):
    D = 7
    order = random_ordering(D)
    masks = made_masks(made_degrees(order, hidden), num_inputs_per_dim=3, num_outputs_per_dim=2)
    paths = masks[0]
    for m in masks[1:]:
        paths = m @ paths  # number of paths from input unit to output unit
    paths = paths.reshape(2, D, 3, D).amax((0, 2))  # (output dim, input dim)
    pos = positions_of(order)
    assert torch.all(paths[pos[None, :] >= pos[:, None]] == 0)


def test_orderings():
    assert torch.equal(make_ordering("natural", 4), torch.arange(4))
    assert torch.equal(make_ordering("reverse", 4), torch.tensor([3, 2, 1, 0]))
    assert torch.equal(make_ordering([2, 0, 1], 3), torch.tensor([2, 0, 1]))
    assert sorted(make_ordering("random", 6).tolist()) == list(range(6))
    assert torch.equal(input_degrees(torch.tensor([2, 0, 1])), torch.tensor([2, 3, 1]))
    for bad in ([0, 0, 1], [0, 1], "sideways"):
        with pytest.raises(ConfigError):
            make_ordering(bad, 3)


def mlp_jacobian(net, x, context=None, **kw):
    """(D, P_out, P_in·D) → max over input values: (D, P_out, D)."""
    D, p_in = net.num_dims, net.num_inputs_per_dim

    def fn(v):
        return net(v[None], context, **kw)[0].T  # (D, P_out)

    jac = torch.autograd.functional.jacobian(fn, x)  # (D, P_out, P_in·D)
    return jac.reshape(D, -1, p_in, D).abs().amax(2)


@pytest.mark.parametrize("hidden", [[], [24], [20, 18, 22]])
def test_masked_mlp_is_autoregressive_for_every_mask(hidden):
    D = 6
    net = MaskedMLP(
        D,
        hidden,
        num_inputs_per_dim=2,
        num_outputs_per_dim=3,
        context_size=4,
        num_masks=4,
        order_agnostic=True,
        connectivity_agnostic=bool(hidden),
        condition_on_mask=True,
        direct_connection=bool(hidden),
        seed=int(torch.randint(1000, ())),
    ).double()
    with torch.no_grad():
        for p in net.parameters():
            p.add_(torch.randn_like(p))  # the mask weights start at zero; make them count
    context = torch.randn(1, 4, dtype=torch.float64)
    x = torch.randn(2 * D, dtype=torch.float64)
    for m in range(4):
        jac = mlp_jacobian(net, x, context, mask_index=m)
        assert_autoregressive(jac, net.orderings[m])
    custom = random_ordering(D)
    assert_autoregressive(mlp_jacobian(net, x, context, mask_index=1, ordering=custom), custom)
    # Without a mask index the stored masks are mask 0's.
    assert torch.equal(net(x[None], context), net(x[None], context, mask_index=0))
    # The context reaches even the first dimension's outputs.
    first = net.orderings[0, 0]
    jc = torch.autograd.functional.jacobian(lambda c: net(x[None], c[None])[0, :, first], context[0])
    assert jc.abs().max() > 0


def test_mask_sets_differ_as_asked():
    a = MaskedMLP(8, [16], num_masks=3, order_agnostic=True)
    assert len({tuple(o.tolist()) for o in a.orderings}) == 3
    assert torch.equal(a.degrees_0[0], a.degrees_0[1])  # same connectivity, new orderings
    b = MaskedMLP(8, [16], num_masks=3, connectivity_agnostic=True)
    assert torch.equal(b.orderings[0], torch.arange(8)) and torch.equal(b.orderings[2], torch.arange(8))
    assert not torch.equal(b.degrees_0[0], b.degrees_0[1])
    c = MaskedMLP(8, [16], num_masks=3, connectivity_agnostic=True)
    assert torch.equal(b.degrees_0, c.degrees_0)  # the seed fixes the mask set
    with pytest.raises(ConfigError, match="agnostic"):
        MaskedMLP(8, [16], num_masks=2)
    with pytest.raises(ConfigError, match="even"):
        MaskedMLP(8, [16], num_masks=2, connectivity_agnostic=True, hidden_degrees="even")
    with pytest.raises(ConfigError, match="index"):
        a(torch.zeros(1, 8), mask_index=3)


def test_num_connected_parameters():
    D = 10
    assert MaskedMLP(D, []).num_connected_parameters() == D * (D - 1) // 2 + D
    net = MaskedMLP(D, [12, 12], num_masks=3, connectivity_agnostic=True)
    union = [torch.zeros_like(layer.mask, dtype=torch.bool) for layer in net.layers]
    for m in range(3):
        union = [u | k.bool() for u, k in zip(union, net.masks(m), strict=True)]
    expected = sum(int(u.sum()) for u in union) + 12 + 12 + D
    assert net.num_connected_parameters() == expected
    conditioned = MaskedMLP(D, [12, 12], num_masks=3, connectivity_agnostic=True, condition_on_mask=True)
    assert conditioned.num_connected_parameters() == expected + int(union[0].sum() + union[1].sum())
    # A direct input → output map adds, per output, one weight for each earlier input of some mask.
    direct = MaskedMLP(D, [12, 12], num_masks=3, order_agnostic=True, direct_connection=True)
    plain = MaskedMLP(D, [12, 12], num_masks=3, order_agnostic=True)
    seen = torch.zeros(D, D, dtype=torch.bool)
    for m in range(3):
        position = torch.argsort(direct.orderings[m])
        seen |= position[:, None] > position[None, :]
    assert direct.num_connected_parameters() == plain.num_connected_parameters() + int(seen.sum())
    with pytest.raises(ConfigError, match="direct_connection"):
        MaskedMLP(D, [], direct_connection=True)


@pytest.mark.parametrize("hidden", [[], [16], [12, 14], [12, 14, 10]])
@pytest.mark.parametrize("p_in", [1, 2])
def test_generate_matches_the_full_network(hidden, p_in):
    """A deterministic step (x_d = tanh of its outputs): the generated point is a fixed point of the full
    forward pass, under each row's own mask or a given ordering, including conditioned positions."""
    D, n = 7, 9
    net = MaskedMLP(
        D,
        hidden,
        num_inputs_per_dim=p_in,
        num_outputs_per_dim=2,
        context_size=3,
        num_masks=3,
        order_agnostic=True,
        connectivity_agnostic=bool(hidden),
        condition_on_mask=True,
        direct_connection=bool(hidden),
        seed=int(torch.randint(1000, ())),
    ).double()
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.3 * torch.randn_like(p))
    context = torch.randn(n, 3, dtype=torch.float64)
    masks = torch.randint(3, (n,))
    given = torch.randn(n, p_in, D, dtype=torch.float64)
    for ordering in (None, random_ordering(D)):
        for start in (0, 3):
            out = net.generate(lambda d, p: torch.tanh(p[:, :p_in]), given, context, masks, ordering, start)
            for i in range(n):
                m = int(masks[i])
                order = net.orderings[m] if ordering is None else ordering
                params = net(out[i : i + 1], context[i : i + 1], mask_index=m, ordering=ordering)[0]
                expect = torch.tanh(params[:p_in])
                if start:
                    kept = order[:start]
                    assert torch.equal(out[i][:, kept], given[i][:, kept])
                    expect[:, kept] = given[i][:, kept]
                assert torch.allclose(out[i], expect, atol=1e-12)


def test_orthogonal_init_is_orthogonal_seeded_and_still_autoregressive():
    D, seed = 7, int(torch.randint(1000, ()))
    options = dict(num_masks=3, order_agnostic=True, connectivity_agnostic=True, direct_connection=True)
    net = MaskedMLP(D, [30, 5], init="orthogonal", seed=seed, **options).double()
    for layer in [*net.layers, net.direct]:
        w = layer.weight  # (out, in): orthonormal rows when out <= in, else orthonormal columns
        gram = w @ w.T if w.shape[0] <= w.shape[1] else w.T @ w
        assert torch.allclose(gram, torch.eye(len(gram), dtype=w.dtype), atol=1e-6)
    assert all(torch.all(layer.bias == 0) for layer in net.layers)
    again = MaskedMLP(D, [30, 5], init="orthogonal", seed=seed, **options).double()
    assert all(torch.equal(a, b) for a, b in zip(net.parameters(), again.parameters(), strict=True))
    x = torch.randn(D, dtype=torch.float64)
    for m in range(3):
        assert_autoregressive(mlp_jacobian(net, x, None, mask_index=m), net.orderings[m])
    with pytest.raises(ConfigError, match="init"):
        MaskedMLP(D, [30], init="xavier")


def test_dropout_keeps_the_autoregressive_property_and_is_off_in_eval_mode():
    D, seed = 8, int(torch.randint(1000, ()))
    options = dict(num_masks=2, order_agnostic=True, connectivity_agnostic=True, direct_connection=True)
    net = MaskedMLP(D, [40, 30], dropout=0.5, seed=seed, **options).double()
    plain = MaskedMLP(D, [40, 30], seed=seed, **options).double()
    plain.load_state_dict(net.state_dict())
    x = torch.randn(D, dtype=torch.float64)
    net.train()
    for m in range(2):  # a fresh dropout draw per Jacobian: dropping units never adds an input
        assert_autoregressive(mlp_jacobian(net, x, None, mask_index=m), net.orderings[m])
    drawn = torch.stack([net(x[None], mask_index=0) for _ in range(4)])
    assert not torch.allclose(drawn[0], drawn[1:])  # training draws differ ...
    net.eval()
    assert torch.equal(net(x[None], mask_index=1), plain(x[None], mask_index=1))  # ... eval is the whole net
    for bad in (1.0, -0.1, "half"):
        with pytest.raises(ConfigError, match="dropout"):
            MaskedMLP(D, [30], dropout=bad)


@pytest.mark.parametrize("num_blocks", [1, 3])
def test_residual_made_is_autoregressive_and_its_blocks_start_as_the_identity(num_blocks):
    D = 6
    ordering = random_ordering(D)
    net = ResidualMaskedMLP(
        D,
        20,
        num_blocks,
        num_outputs_per_dim=2,
        context_size=3,
        ordering=ordering.tolist(),
        hidden_degrees="random",
        seed=int(torch.randint(1000, ())),
    ).double()
    assert torch.equal(net.ordering(), ordering)
    assert len(net.layers) == 2 + 2 * num_blocks
    x = torch.randn(4, D, dtype=torch.float64)
    context = torch.randn(4, 3, dtype=torch.float64)
    # Every block's last layer is zero: the network is the linear MADE W_out W_0 x.
    h = net.layers[0](x) + net.context_hidden(context)
    linear = (net.layers[-1](h) + net.context_output(context)).reshape(4, 2, D)
    torch.testing.assert_close(net(x, context), linear, atol=1e-12, rtol=0)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(torch.randn_like(p))
    assert not torch.allclose(net(x, context), linear)
    jac = mlp_jacobian(net, x[0], context[:1])
    assert_autoregressive(jac, ordering)
    # The context reaches even the first dimension's outputs.
    first = ordering[0]
    jc = torch.autograd.functional.jacobian(lambda c: net(x[:1], c[None])[0, :, first], context[0])
    assert jc.abs().max() > 0


@pytest.mark.parametrize(("D", "activation"), [(7, "relu"), (7, "sigmoid"), (1, "tanh")])
def test_residual_made_generates_a_fixed_point_of_its_forward_pass_in_one_evaluation(D, activation):
    """σ(0) ≠ 0 for the sigmoid: units not yet computed must count as absent, not as σ(0)."""
    n = 5
    net = ResidualMaskedMLP(
        D, 16, 2, num_outputs_per_dim=2, context_size=2, ordering="random", activation=activation, seed=3
    )
    net = net.double()
    calls = []
    net.register_forward_hook(lambda *args: calls.append(1))
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.3 * torch.randn_like(p))
    context = torch.randn(n, 2, dtype=torch.float64)
    given = torch.randn(n, 1, D, dtype=torch.float64)
    for start in (0, min(3, D)):
        out = net.generate(lambda d, p: torch.tanh(p[:, :1]), given, context, start=start)
        assert not calls  # no full pass: each unit is computed once, when its inputs are final
        expect = torch.tanh(net(out, context)[:, :1])
        calls.clear()
        kept = net.ordering()[:start]
        assert torch.equal(out[:, :, kept], given[:, :, kept])
        expect[:, :, kept] = given[:, :, kept]
        torch.testing.assert_close(out, expect, atol=1e-12, rtol=0)


def test_residual_made_options_are_checked():
    for options, message in [
        ({"num_blocks": 0}, "num_blocks"),
        ({"hidden_size": 0}, "positive"),
        ({"activation": "swish"}, "activation"),
        ({"ordering": [0, 0, 1]}, "permutation"),
    ]:
        with pytest.raises(ConfigError, match=message):
            ResidualMaskedMLP(3, **{"hidden_size": 8, **options})
    with pytest.raises(ConfigError, match="one mask"):
        ResidualMaskedMLP(3, 8).ordering(1)


def test_hidden_sizes_are_checked_once_for_every_model():
    import numpy as np

    from dgm.nn.functional import hidden_sizes_list

    assert hidden_sizes_list(5) == [5] and hidden_sizes_list((3, 4)) == [3, 4] and hidden_sizes_list([]) == []
    assert hidden_sizes_list(np.array([3, 4])) == [3, 4]
    for bad in ("abc", [3, "a"], True, [True], 2.5, [0], None):
        with pytest.raises(dgm.ConfigError, match="positive int"):
            hidden_sizes_list(bad)
    for name, option in (("made", "hidden_sizes"), ("maf", "hidden_sizes"), ("vae", "hidden_sizes")):
        with pytest.raises(dgm.ConfigError, match="hidden_sizes must be a positive int"):
            dgm.build(name, event_shape=(4,), **{option: "abc"})
