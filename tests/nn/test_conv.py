"""Masked and stack convolutions: which input pixels each output pixel can see (autograd Jacobians)."""

import pytest
import torch

import dgm
from dgm.nn.conv import GatedPixelCNNLayer, MaskedConv2d, PixelCNNResidualBlock, VerticalConv2d


def dependence(f, x: torch.Tensor) -> torch.Tensor:
    """dep[o, i]: output value o (raster order over (H, W, C_out)) depends on input value i ((H, W, C_in)).

    Unioned over a few random inputs so that an accidental zero gradient does not pass for a structural one.
    """
    x = x.double()
    dep = None
    for _ in range(3):
        inp = torch.randn_like(x)
        J = torch.autograd.functional.jacobian(f, inp)  # (1, Co, H, W, 1, Ci, H, W)
        _, co, h, w, _, ci, _, _ = J.shape
        d = (J[0, :, :, :, 0] != 0).permute(1, 2, 0, 4, 5, 3).reshape(h * w * co, h * w * ci)
        dep = d if dep is None else dep | d
    return dep


def pixel_dependence(dep: torch.Tensor, co: int, ci: int) -> torch.Tensor:
    """Collapse channels: [output pixel, input pixel]."""
    n_out, n_in = dep.shape
    return dep.reshape(n_out // co, co, n_in // ci, ci).any(3).any(1)


def test_type_a_and_b_masks_for_one_channel():
    a = MaskedConv2d(1, 1, 3, "A")
    b = MaskedConv2d(1, 1, 3, "B")
    expected_a = torch.tensor([[1, 1, 1], [1, 0, 0], [0, 0, 0]]).float()
    assert torch.equal(a.mask[0, 0], expected_a)
    expected_b = expected_a.clone()
    expected_b[1, 1] = 1
    assert torch.equal(b.mask[0, 0], expected_b)


@pytest.mark.parametrize("mask_type", ["A", "B"])
@pytest.mark.parametrize("kernel", [1, 3, 5])
def test_masked_conv_sees_only_earlier_pixels(mask_type, kernel):
    conv = MaskedConv2d(1, 2, kernel, mask_type).double()
    H, W = 4, 5
    dep = pixel_dependence(dependence(conv, torch.zeros(1, 1, H, W)), 2, 1)
    idx = torch.arange(H * W)
    allowed = idx[None, :] < idx[:, None] if mask_type == "A" else idx[None, :] <= idx[:, None]
    assert not (dep & ~allowed).any()
    # ...and it does see the pixels its kernel covers: the one to the left and the one above.
    r = kernel // 2
    if r:
        p = 2 * W + 2
        assert dep[p, p - 1] and dep[p, p - W]


@pytest.mark.parametrize("mask_type", ["A", "B"])
def test_channel_groups_r_g_b(mask_type):
    C = 3
    conv = MaskedConv2d(C, 2 * C, 3, mask_type, data_channels=C).double()
    H, W = 3, 3
    dep = dependence(conv, torch.zeros(1, C, H, W))  # (H·W·2C, H·W·C)
    out_group = torch.arange(2 * C) % C
    for p in range(H * W):
        for q in range(H * W):
            block = dep[p * 2 * C : (p + 1) * 2 * C, q * C : (q + 1) * C]
            if q > p:
                assert not block.any()
            elif q == p:
                ok = out_group[:, None] > torch.arange(C)[None, :]
                if mask_type == "B":
                    ok = out_group[:, None] >= torch.arange(C)[None, :]
                assert torch.equal(block, ok)
    # Over all input channels, a map of group g at pixel p reads earlier pixels fully.
    assert dep[4 * 2 * C : 5 * 2 * C, 3 * C : 4 * C].all()


def test_forward_never_mutates_weights_and_masked_weights_get_no_gradient():
    conv = MaskedConv2d(2, 4, 3, "A", data_channels=2)
    before = conv.weight.detach().clone()
    conv(torch.randn(3, 2, 5, 5)).sum().backward()
    assert torch.equal(conv.weight, before)
    assert (conv.weight.grad[conv.mask == 0] == 0).all()
    assert "mask" not in conv.state_dict()  # rebuilt from the arguments, not stored
    assert conv.mask in list(conv.buffers())


@pytest.mark.parametrize(
    "kernel, center, mask_type, C",
    [(3, None, "B", 1), (7, None, "A", 1), (5, None, "B", 3), ((1, 3), (0, 2), "A", 3), (1, None, "B", 1)],
)
def test_cropped_conv_is_the_full_masked_convolution(kernel, center, mask_type, C):
    # The layer runs on the kernel's rows up to the centre; it must compute what the textbook layer
    # does: the whole kernel times its mask, zero padding around the centre tap.
    conv = MaskedConv2d(2 * C, 4 * C, kernel, mask_type, data_channels=C, center=center).double()
    x = torch.randn(3, 2 * C, 6, 5, dtype=torch.float64, requires_grad=True)
    kh, kw = conv.kernel_size
    ci, cj = conv.center
    padded = torch.nn.functional.pad(x, (cj, kw - 1 - cj, ci, kh - 1 - ci))
    expected = torch.nn.functional.conv2d(padded, conv.weight * conv.mask, conv.bias)
    y = conv(x)
    assert y.shape == expected.shape == (3, 4 * C, 6, 5)
    torch.testing.assert_close(y, expected, rtol=0, atol=1e-12)
    g = torch.randn_like(y)
    got = torch.autograd.grad(y, (x, conv.weight), g)
    want = torch.autograd.grad(expected, (x, conv.weight), g)
    for a, b in zip(got, want, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-12)


@pytest.mark.parametrize("shift", [True, False])
@pytest.mark.parametrize("kernel", [1, 3, 5])
def test_vertical_conv_rows(shift, kernel):
    conv = VerticalConv2d(1, 1, kernel, shift=shift).double()
    H, W = 6, 7
    dep = pixel_dependence(dependence(conv, torch.zeros(1, 1, H, W)), 1, 1)
    rows, cols = torch.arange(H).repeat_interleave(W), torch.arange(W).repeat(H)
    dr = rows[:, None] - rows[None, :]
    dc = cols[None, :] - cols[:, None]
    reach = kernel // 2
    lo = 1 if shift else 0
    expected = (dr >= lo) & (dr <= reach + lo) & (dc.abs() <= reach)
    assert torch.equal(dep, expected)
    assert conv.rows_up == reach + lo


@pytest.mark.parametrize("C", [1, 3])
def test_gated_first_layer_stacks(C):
    """On the data, the vertical stack sees strictly the rows above; the horizontal stack earlier values."""
    p = 2 * C
    layer = GatedPixelCNNLayer(C, p, 3, data_channels=C, first=True, num_classes=4).double()
    with torch.no_grad():
        for q in layer.parameters():
            q.add_(0.3 * torch.randn_like(q))
    H, W = 4, 4
    ctx = torch.tensor([2])
    x = torch.zeros(1, C, H, W)
    dep_v = pixel_dependence(dependence(lambda t: layer(t, t, ctx)[0], x), p, C)
    dep_h = dependence(lambda t: layer(t, t, ctx)[1], x)
    rows = torch.arange(H).repeat_interleave(W)
    above = rows[None, :] < rows[:, None]
    assert not (dep_v & ~above).any() and dep_v.any()
    idx = torch.arange(H * W)
    dep_h_pix = pixel_dependence(dep_h, p, C)
    assert not (dep_h_pix & (idx[None, :] > idx[:, None])).any()
    assert dep_h_pix[5, 4] and dep_h_pix[5, 1]  # the pixel to the left, and one above through the link
    centre = torch.stack([dep_h[k * p : (k + 1) * p, k * C : (k + 1) * C] for k in range(H * W)])
    g_out, g_in = torch.arange(p) % C, torch.arange(C)
    assert not (centre & (g_in[None, :] >= g_out[:, None])).any()  # type A at the centre


@pytest.mark.parametrize("C", [1, 3])
def test_gated_later_layer_stacks(C):
    """Later layers: the vertical stack reads rows r-k//2..r of the vertical features (themselves strictly
    above); the horizontal one earlier pixels of the horizontal features (type B at the centre)."""
    p = 2 * C
    layer = GatedPixelCNNLayer(p, p, 3, data_channels=C).double()
    H, W = 4, 4
    v0, h0 = torch.randn(1, p, H, W).double(), torch.randn(1, p, H, W).double()
    rows, cols = torch.arange(H).repeat_interleave(W), torch.arange(W).repeat(H)
    dr = rows[:, None] - rows[None, :]
    dc = cols[None, :] - cols[:, None]
    dep_vv = pixel_dependence(dependence(lambda v: layer(v, h0)[0], v0), p, p)
    assert torch.equal(dep_vv, (dr >= 0) & (dr <= 1) & (dc.abs() <= 1))
    dep_vh = pixel_dependence(dependence(lambda h: layer(v0, h)[0], h0), p, p)
    assert not dep_vh.any()  # nothing flows from the horizontal stack into the vertical one
    dep_hh = dependence(lambda h: layer(v0, h)[1], h0)
    idx = torch.arange(H * W)
    assert not (pixel_dependence(dep_hh, p, p) & (idx[None, :] > idx[:, None])).any()
    centre = torch.stack([dep_hh[k * p : (k + 1) * p, k * p : (k + 1) * p] for k in range(H * W)])
    g = torch.arange(p) % C
    assert not (centre & (g[None, :] > g[:, None])).any()


def test_gated_layer_residual_and_class_bias():
    layer = GatedPixelCNNLayer(4, 4, 3, num_classes=3)
    with torch.no_grad():
        layer.class_bias_h.weight.normal_()
        layer.class_bias_v.weight.normal_()
    v, h = torch.randn(2, 4, 3, 3), torch.randn(2, 4, 3, 3)
    v0, h0 = layer(v, h, torch.tensor([0, 0]))
    v1, h1 = layer(v, h, torch.tensor([1, 1]))
    assert not torch.allclose(h0, h1) and not torch.allclose(v0, v1)
    with torch.no_grad():
        layer.out.weight.zero_()
        layer.out.bias.zero_()
    assert torch.equal(layer(v, h, torch.tensor([0, 0]))[1], h)  # the horizontal stack is residual


def test_residual_block_is_type_b():
    block = PixelCNNResidualBlock(4, 3).double()
    H, W = 4, 4
    dep = pixel_dependence(dependence(block, torch.zeros(1, 4, H, W)), 4, 4)
    idx = torch.arange(H * W)
    assert not (dep & (idx[None, :] > idx[:, None])).any()
    assert dep.diagonal().all()


def test_bad_arguments_raise_config_errors():
    with pytest.raises(dgm.ConfigError, match="mask_type"):
        MaskedConv2d(1, 1, 3, "C")
    with pytest.raises(dgm.ConfigError, match="multiple of the number of data channels"):
        MaskedConv2d(3, 4, 3, "B", data_channels=3)
    with pytest.raises(dgm.ConfigError, match="odd"):
        VerticalConv2d(1, 1, 4)
    with pytest.raises(dgm.ConfigError, match="outside"):
        MaskedConv2d(1, 1, 3, center=(3, 0))
