"""Image-conditioned PixelCNN and Gated PixelCNN (``context_shape``; van den Oord et al. 2016b, eq. 5)."""

import pytest
import torch

import dgm
from dgm.core.distributions import sample as draw
from tests.models.helpers import all_configurations, perturb_parameters

MODELS = ["pixelcnn", "gated-pixelcnn"]


def build(name, event_shape, context_shape, support="binary", perturb=0.3, **options):
    options = {"channels": 6, "num_layers": 2, "kernel_size": 3, "first_kernel_size": 3, **options}
    model = dgm.build(name, event_shape=event_shape, support=support, context_shape=context_shape, **options)
    if perturb:
        perturb_parameters(model, perturb)
    return model


# ------------------------------------------------------------------ structure
@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize(("C", "support"), [(1, "binary"), (2, "categorical(3)")])
def test_causal_with_a_context_and_every_value_depends_on_it(name, C, support):
    """d logits_i / d x_j = 0 for j at or after i in raster order (rows, columns, channels), with a
    context; and every value's logits depend on the context."""
    H, W = 4, 4
    # Wide enough output layers that a dead ReLU does not cut a pixel off by chance.
    model = build(name, (C, H, W), [C, 2, 2], support, channels=8 * C, output_channels=16).double()
    k = model.num_categories
    proj = torch.randn(k, dtype=torch.float64)

    def f(inp, c):
        logits = model.logits(inp, c)
        return logits if logits.dim() == 4 else logits @ proj

    D = C * H * W
    # raster position of value (ch, r, c): (r·W + c)·C + ch
    pos = (torch.arange(H * W).reshape(1, H, W) * C + torch.arange(C).reshape(C, 1, 1)).reshape(-1)
    dep = torch.zeros(D, D, dtype=torch.bool)
    on_context = torch.zeros(D, dtype=torch.bool)
    # The union over twelve random inputs and signed contexts, so that ReLUs that happen to be off for
    # one draw do not pass for a structural zero (with four draws, 1 seed in ~10^4 left a value's context
    # path off in all of them: DGM_TEST_SEED=55876).
    for _ in range(12):
        inp = torch.randint(0, k, (1, C, H, W)).double()
        ctx = torch.randn(1, C, 2, 2, dtype=torch.float64)
        J = torch.autograd.functional.jacobian(lambda v, c=ctx: f(v, c), inp)[0, :, :, :, 0]
        dep |= (J != 0).reshape(D, D)
        Jc = torch.autograd.functional.jacobian(lambda c, v=inp: f(v, c), ctx)[0, :, :, :, 0]
        on_context |= (Jc.reshape(D, -1) != 0).any(1)
    assert on_context.all(), "some value's logits ignore the context"
    forbidden = pos[None, :] >= pos[:, None]
    assert not dep[forbidden].any()
    assert dep[~forbidden].any()


@pytest.mark.parametrize("name", MODELS)
def test_changing_the_context_changes_the_logits(name):
    model = build(name, (1, 4, 4), [1, 2, 2])
    x = torch.randint(0, 2, (3, 1, 4, 4)).float()
    a, b = torch.rand(3, 1, 2, 2), torch.rand(3, 1, 2, 2)
    assert not torch.allclose(model.logits(x, a), model.logits(x, b))
    torch.testing.assert_close(model.logits(x, a), model.logits(x, a.clone()))
    # One unbatched image is broadcast to the batch.
    torch.testing.assert_close(model.logits(x, a[0]), model.logits(x, a[:1].expand(3, -1, -1, -1)))


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("context_shape", [[1, 1, 1], [2, 1, 2], [1, 3, 3]])
def test_normalises_over_all_images_for_random_contexts(name, context_shape):
    """Σ over the 16 binary 1×2×2 images of p(x | h) = 1 for every context h."""
    model = build(name, (1, 2, 2), context_shape, perturb=0.5)
    x = all_configurations(4).reshape(16, 1, 2, 2)
    for _ in range(4):
        ctx = torch.randn(1, *context_shape) * 2
        total = model.log_prob(x, ctx.expand(16, *context_shape)).logsumexp(0).exp()
        assert abs(total.item() - 1) < 1e-5


@pytest.mark.parametrize("name", MODELS)
def test_normalises_categorical(name):
    model = build(name, (1, 2, 2), [1, 1, 1], "categorical(3)")
    x = all_configurations(4, 3).reshape(81, 1, 2, 2)
    ctx = torch.rand(1, 1, 1, 1).expand(81, 1, 1, 1)
    assert abs(model.log_prob(x, ctx).logsumexp(0).exp().item() - 1) < 1e-5


# ------------------------------------------------------------------ sampling
@pytest.mark.parametrize("name", MODELS)
def test_band_with_cropped_context_gives_the_full_image_logits(name):
    model = build(name, (1, 9, 4), [1, 3, 2], num_layers=1)
    H = 9
    assert model.receptive_rows < H - 2
    x = torch.randint(0, 2, (3, 1, H, 4)).float()
    ctx = torch.rand(3, 1, 3, 2)
    full = model.logits(x, ctx)
    for r in range(H):
        top = max(0, r - model.receptive_rows)
        band_ctx = model.context_band(ctx, 3, top, r + 1)
        band = model._head(model._features(model._scale(x[:, :, top : r + 1]), band_ctx)[:, :, -1:])
        torch.testing.assert_close(band[:, :, 0], full[:, :, r], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", MODELS)
def test_banded_sampler_equals_full_image_reference(name):
    """With the same generator, the banded sampler draws exactly what a sampler running the whole image
    per value (model.logits on the full image) draws."""
    model = build(name, (2, 7, 3), [2, 7, 1], channels=8, num_layers=1)
    C, H, W = model.event_shape
    ctx = torch.rand(5, 2, 7, 1)
    got = model.sample(5, ctx, generator=torch.Generator().manual_seed(3))
    g = torch.Generator().manual_seed(3)
    ref = torch.zeros(5, C, H, W)
    with torch.no_grad():
        for r in range(H):
            for c in range(W):
                for ch in range(C):
                    logits = model.logits(ref, ctx)[:, ch, r, c]
                    ref[:, ch, r, c] = draw(model.distribution(logits), (), g)
    assert torch.equal(got, ref)
    assert got.shape == (5, 2, 7, 3)


@pytest.mark.parametrize("name", MODELS)
def test_samples_depend_on_the_context(name):
    """Samples follow the context: a strongly conditioned model (large context biases) copies it."""
    model = build(name, (1, 4, 4), [1, 4, 4], perturb=0)
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
        # s = m(h) copies h into map 0; the output layers read only that map, as +/- a large logit.
        net = model.context_net.net
        net[0].weight[0, 0, 1, 1] = 1.0
        net[2].weight[0, 0, 1, 1] = 1.0
        net[2].bias[0] = 0.0
        layers = model.layers if name == "gated-pixelcnn" else None
        if layers is None:
            model.first_context_bias.weight[0, 0] = 20.0
            model.first_context_bias.bias[0] = -10.0
        else:
            # gated: the tanh half gets 20·s − 10, the σ half a large constant (gate ≈ 1)
            last = layers[0]
            last.context_h.weight[0, 0] = 20.0
            last.context_h.bias[0] = -10.0
            last.context_h.bias[6] = 10.0
            last.out.weight[0, 0] = 1.0
        model.head[0].weight[0, 0] = 1.0
        model.head[1].weight[0, 0] = 10.0
        model.head[1].bias[0] = -5.0
    h = torch.randint(0, 2, (6, 1, 4, 4)).float()
    s = model.sample(6, h, generator=torch.Generator().manual_seed(0))
    assert (s == h).float().mean() > 0.95


# ------------------------------------------------------------------ interface
@pytest.mark.parametrize("name", MODELS)
def test_round_trip_and_config(name, tmp_path):
    from dgm.core.checkpoint import save_model

    model = build(name, (1, 4, 4), (1, 2, 2))
    assert model.conditional
    assert model.config["context_shape"] == [1, 2, 2]
    save_model(model, tmp_path)
    loaded = dgm.load(tmp_path)
    assert loaded.config == model.config
    x = torch.randint(0, 2, (3, 1, 4, 4)).float()
    ctx = torch.rand(3, 1, 2, 2)
    assert torch.equal(model.log_prob(x, ctx), loaded.log_prob(x, ctx))
    a = model.sample(3, ctx, generator=torch.Generator().manual_seed(1))
    assert torch.equal(a, loaded.sample(3, ctx, generator=torch.Generator().manual_seed(1)))
    assert "context_shape=[1, 2, 2]" in repr(model)


@pytest.mark.parametrize("name", MODELS)
def test_context_errors(name):
    model = build(name, (1, 4, 4), [1, 2, 2])
    x = torch.randint(0, 2, (3, 1, 4, 4)).float()
    ctx = torch.rand(3, 1, 2, 2)
    with pytest.raises(dgm.DataError, match="conditioned on an image.*pass context"):
        model.log_prob(x)
    with pytest.raises(dgm.DataError, match="expects \\(N, 1, 2, 2\\)"):
        model.log_prob(x, torch.rand(3, 1, 3, 3))
    with pytest.raises(dgm.DataError, match="2 images for a batch of 3"):
        model.log_prob(x, ctx[:2])
    with pytest.raises(dgm.DataError, match="float tensor"):
        model.log_prob(x, ctx.long())
    with pytest.raises(dgm.DataError, match="NaN"):
        model.log_prob(x, torch.where(ctx > 0.5, float("nan"), ctx))
    with pytest.raises(dgm.DataError, match="inf"):
        model.sample(3, torch.full((3, 1, 2, 2), float("inf")))
    with pytest.raises(dgm.DataError, match="torch.Tensor"):
        model.log_prob(x, [[0.5]])
    with pytest.raises(dgm.DataError, match="takes no context"):
        dgm.build(name, event_shape=(1, 4, 4)).log_prob(x, ctx)


@pytest.mark.parametrize("name", MODELS)
def test_configuration_errors(name):
    with pytest.raises(dgm.ConfigError, match="exclusive"):
        dgm.build(name, event_shape=(1, 4, 4), num_classes=3, context_shape=[1, 2, 2])
    for bad in ([1, 2], [1, 0, 2], "1,2,2", [1, 2.0, 2], [True, 2, 2]):
        with pytest.raises(dgm.ConfigError, match="context_shape must be"):
            dgm.build(name, event_shape=(1, 4, 4), context_shape=bad)


@pytest.mark.parametrize("name", MODELS)
def test_class_conditional_unchanged(name):
    model = build(name, (1, 3, 3), None, num_classes=2)
    assert model.conditional and model.context_shape is None
    assert not build(name, (1, 3, 3), None).conditional
    x = torch.randint(0, 2, (4, 1, 3, 3)).float()
    assert model.log_prob(x, torch.tensor([0, 1, 1, 0])).shape == (4,)


def test_pixelrnn_still_builds():
    model = dgm.build("pixelrnn", event_shape=(1, 3, 3), channels=4, num_layers=1)
    assert not model.conditional and model.context_shape is None
    assert model.sample(2, generator=torch.Generator().manual_seed(0)).shape == (2, 1, 3, 3)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("name", MODELS)
def test_runs_on_cuda(name):
    model = build(name, (1, 4, 4), [1, 2, 2]).cuda()
    x = torch.randint(0, 2, (3, 1, 4, 4)).float().cuda()
    ctx = torch.rand(3, 1, 2, 2).cuda()
    assert model.log_prob(x, ctx).device.type == "cuda"
    assert model.sample(3, ctx, generator=torch.Generator("cuda").manual_seed(0)).device.type == "cuda"
    assert model.log_prob(x, ctx.cpu()).device.type == "cuda"  # a CPU context is moved
