"""PixelCNN and Gated PixelCNN: causality, the blind spot, normalisation, sampling, conditioning."""

import math

import pytest
import torch

import dgm
from tests.models.autoregressive.helpers import dependence, full_dependence
from tests.models.helpers import all_configurations, perturb_parameters

MODELS = ["pixelcnn", "gated-pixelcnn"]


def build(name, event_shape, support="binary", perturb=0.3, **options):
    options = {"channels": 6, "num_layers": 2, "kernel_size": 3, "first_kernel_size": 3, **options}
    model = dgm.build(name, event_shape=event_shape, support=support, **options)
    if perturb:
        perturb_parameters(model, perturb)
    return model


def pixel_offsets(H, W):
    rows, cols = torch.arange(H).repeat_interleave(W), torch.arange(W).repeat(H)
    up = rows[:, None] - rows[None, :]  # how far above output pixel i input pixel j lies
    right = cols[None, :] - cols[:, None]  # how far to the right
    return up, right


# ------------------------------------------------------------------ causality
@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize(
    ("layers", "kernel", "first", "C", "support", "classes"),
    [
        (1, 3, 3, 1, "binary", None),
        (3, 3, 7, 1, "categorical(4)", 3),
        (2, 5, 5, 3, "binary", 2),
        (2, 1, 3, 3, "categorical(3)", None),
        (0, 3, 5, 2, "binary", None),
    ],
)
def test_logits_depend_only_on_earlier_values(name, layers, kernel, first, C, support, classes):
    model = build(
        name,
        (C, 4, 4),
        support,
        channels=6 * C,
        num_layers=layers,
        kernel_size=kernel,
        first_kernel_size=first,
        num_classes=classes,
        output_channels=8 * C,
    ).double()
    context = None if classes is None else torch.tensor([classes - 1])
    dep = dependence(model, context)
    D = C * 16
    future = torch.arange(D)[None, :] >= torch.arange(D)[:, None]
    assert not (dep & future).any(), "a logit depends on its own or a later value"
    assert dep.any()


# ------------------------------------------------------------------ blind spot
def test_gated_pixelcnn_has_no_blind_spot():
    """With enough layers every earlier pixel of a 5×5 image reaches every later pixel's logits.

    (A wide output layer and several weight draws keep a pixel's ReLUs from all being inactive on every
    random input, which would zero its gradient by accident rather than by structure.)"""
    model = build("gated-pixelcnn", (1, 5, 5), channels=8, num_layers=4, output_channels=32).double()
    dep = full_dependence(model)
    D = 25
    earlier = torch.arange(D)[None, :] < torch.arange(D)[:, None]
    assert torch.equal(dep, earlier)


def test_plain_pixelcnn_has_the_blind_spot():
    """The same depth of plain masked convolutions covers the image's radius but never sees the pixels
    above and to the right beyond the 45° line: exactly {j above i : columns right of i > rows above i}."""
    model = build("pixelcnn", (1, 5, 5), channels=16, num_layers=4, output_channels=32).double()
    assert model.receptive_rows >= 4  # the radius covers the whole image...
    dep = full_dependence(model)
    up, right = pixel_offsets(5, 5)
    earlier = torch.arange(25)[None, :] < torch.arange(25)[:, None]
    blind = (up >= 1) & (right > up)
    assert blind.any()
    assert not (dep & blind).any()  # ...yet the blind spot is never seen
    assert torch.equal(dep, earlier & ~blind)  # and everything else is
    # E.g. the logits of pixel (2, 1) ignore pixel (1, 3), one row up and two columns right.
    assert not dep[2 * 5 + 1, 1 * 5 + 3]


# ------------------------------------------------------------------ normalisation
@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("num_classes", [None, 3])
def test_normalises_over_all_binary_3x3_images(name, num_classes):
    model = build(name, (1, 3, 3), num_classes=num_classes)
    x = all_configurations(9).reshape(-1, 1, 3, 3)
    for label in range(num_classes or 1):
        context = None if num_classes is None else torch.full((len(x),), label)
        total = torch.logsumexp(model.log_prob(x, context).double(), 0).exp().item()
        assert total == pytest.approx(1.0, abs=1e-5)


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize(("shape", "support"), [((2, 2, 2), "binary"), ((2, 1, 2), "categorical(3)")])
def test_normalises_with_several_channels(name, shape, support):
    model = build(name, shape, support, channels=4)
    k = model.num_categories
    d = math.prod(shape)
    x = all_configurations(d, k).reshape(-1, *shape)
    total = torch.logsumexp(model.log_prob(x).double(), 0).exp().item()
    assert total == pytest.approx(1.0, abs=1e-5)


@pytest.mark.parametrize("name", MODELS)
def test_categorical_256_runs_and_normalises(name):
    model = build(name, (1, 1, 2), "categorical(256)", channels=4, num_layers=1, output_channels=8)
    x = all_configurations(2, 256).reshape(-1, 1, 1, 2)
    lp = model.log_prob(x)
    assert lp.shape == (65536,) and torch.isfinite(lp).all()
    assert torch.logsumexp(lp.double(), 0).exp().item() == pytest.approx(1.0, abs=1e-4)
    s = model.sample(7)
    assert s.shape == (7, 1, 1, 2) and s.min() >= 0 and s.max() <= 255 and torch.equal(s, s.round())


# ------------------------------------------------------------------ sampling
def _tv_check(model, shape, k, context_label=None, n=20_000):
    d = math.prod(shape)
    configs = all_configurations(d, k)
    ctx_all = None if context_label is None else torch.full((len(configs),), context_label)
    p = model.log_prob(configs.reshape(-1, *shape), ctx_all).double().exp()
    ctx = None if context_label is None else torch.full((n,), context_label)
    s = model.sample(n, ctx, generator=torch.Generator().manual_seed(1)).reshape(n, d)
    codes = (s.long() * (k ** torch.arange(d - 1, -1, -1))).sum(1)
    freq = torch.bincount(codes, minlength=k**d).double() / n
    tv = 0.5 * (freq - p).abs().sum().item()
    bound = 4 * 0.5 * math.sqrt(2 / math.pi) * (p * (1 - p) / n).sqrt().sum().item()
    assert tv < bound, (tv, bound)


@pytest.mark.parametrize("name", MODELS)
def test_conditional_samples_match_density_for_each_class(name):
    model = build(name, (1, 1, 3), num_classes=2)
    with torch.no_grad():  # make the classes differ visibly
        for m in model.modules():
            if isinstance(m, torch.nn.Embedding):
                m.weight.normal_()
    for label in (0, 1):
        _tv_check(model, (1, 1, 3), 2, label)


@pytest.mark.parametrize("name", MODELS)
def test_samples_match_density_with_two_channels(name):
    _tv_check(build(name, (2, 1, 2), channels=4), (2, 1, 2), 2)


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize(("C", "first", "kernel"), [(1, 3, 3), (2, 5, 3), (1, 7, 5)])
def test_sampling_band_gives_the_full_image_logits(name, C, first, kernel):
    """The sampler runs on rows r-receptive_rows..r only; that band's last row equals the full forward."""
    model = build(name, (C, 9, 4), channels=8 * C, num_layers=1, first_kernel_size=first, kernel_size=kernel)
    H = 9
    assert model.receptive_rows < H - 2  # the crop really drops rows
    x = torch.randint(0, 2, (3, C, H, 4)).float()
    full = model.logits(x)
    for r in range(H):
        top = max(0, r - model.receptive_rows)
        band = model._head(model._features(model._scale(x[:, :, top : r + 1]), None)[:, :, -1:])
        torch.testing.assert_close(band[:, :, 0], full[:, :, r], rtol=1e-5, atol=1e-5)
    # One row fewer is not enough: the crop is as small as it can be. With ReLUs one weight draw can leave
    # every path from the dropped row inactive on all inputs (about 3 draws in 1000 for the 3×3 PixelCNN),
    # so the row counts as needed if it changes the logits under any of a few fresh draws.
    r = H - 1
    top = r - model.receptive_rows + 1
    differs = False
    for _ in range(4):
        band = model._head(model._features(model._scale(x[:, :, top : r + 1]), None)[:, :, -1:])
        differs |= not torch.allclose(band[:, :, 0], model.logits(x)[:, :, r])
        perturb_parameters(model, 0.3)
    assert differs


@pytest.mark.parametrize("name", MODELS)
def test_sampling_costs_one_forward_pass_per_value(name):
    model = build(name, (2, 3, 4), channels=4)
    calls = []
    features = model._features
    model._features = lambda x, c: calls.append(x.shape) or features(x, c)
    s = model.sample(5, generator=torch.Generator().manual_seed(0))
    assert s.shape == (5, 2, 3, 4)
    assert len(calls) == 2 * 3 * 4


@pytest.mark.parametrize("name", MODELS)
def test_seeded_conditional_sampling(name):
    model = build(name, (1, 3, 3), num_classes=3)
    a = model.sample(6, 2, generator=torch.Generator().manual_seed(5))  # an int label is broadcast
    b = model.sample(6, torch.full((6,), 2), generator=torch.Generator().manual_seed(5))
    assert torch.equal(a, b)


# ------------------------------------------------------------------ learning
@pytest.mark.parametrize("name", MODELS)
def test_recovers_a_small_distribution(name):
    """Minimising the exact cross-entropy to a distribution over 2×2 binary images recovers it."""
    torch.manual_seed(0)
    model = build(name, (1, 2, 2), perturb=0, channels=8)
    x = all_configurations(4).reshape(-1, 1, 2, 2)
    target = torch.distributions.Dirichlet(torch.ones(16)).sample()
    opt = torch.optim.Adam(model.parameters(), lr=0.03)
    for _ in range(300):
        opt.zero_grad()
        loss = -(target * model.log_prob(x)).sum()
        loss.backward()
        opt.step()
    q = model.log_prob(x).detach().exp()
    kl = (target * (target.clamp_min(1e-12).log() - q.log())).sum().item()
    assert kl < 0.01


# ------------------------------------------------------------------ interface
@pytest.mark.parametrize("name", MODELS)
def test_conditional_round_trip_and_context_errors(name, tmp_path):
    from dgm.core.checkpoint import save_model

    model = build(name, (1, 3, 3), num_classes=4)
    assert model.conditional
    x = torch.randint(0, 2, (5, 1, 3, 3)).float()
    y = torch.tensor([0, 1, 2, 3, 0])
    save_model(model, tmp_path)
    loaded = dgm.load(tmp_path)
    assert loaded.config == model.config
    assert torch.equal(model.log_prob(x, y), loaded.log_prob(x, y))
    with pytest.raises(dgm.DataError, match="pass context"):
        model.log_prob(x)
    with pytest.raises(dgm.DataError, match="out of range"):
        model.log_prob(x, torch.tensor([0, 1, 2, 4, 0]))
    with pytest.raises(dgm.DataError, match="takes no context"):
        build(name, (1, 3, 3)).log_prob(x, y)


@pytest.mark.parametrize("name", MODELS)
def test_bad_configurations(name):
    with pytest.raises(dgm.ConfigError, match="event_shape must be"):
        dgm.build(name, event_shape=(9,))
    with pytest.raises(dgm.ConfigError, match="support"):
        dgm.build(name, event_shape=(1, 3, 3), support="real")
    with pytest.raises(dgm.ConfigError, match="odd"):
        dgm.build(name, event_shape=(1, 3, 3), kernel_size=4)
    with pytest.raises(dgm.ConfigError, match="multiple of the number of data channels"):
        dgm.build(name, event_shape=(3, 3, 3), channels=4)


@pytest.mark.parametrize("name", MODELS)
def test_free_parameters_exclude_masked_weights(name):
    model = build(name, (1, 4, 4))
    total = sum(p.numel() for p in model.parameters())
    assert 0 < model.num_parameters() < total


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("name", MODELS)
def test_runs_on_cuda(name):
    model = build(name, (1, 3, 3), num_classes=2).cuda()
    x = torch.randint(0, 2, (4, 1, 3, 3)).float().cuda()
    y = torch.tensor([0, 1, 0, 1]).cuda()
    assert model.log_prob(x, y).device.type == "cuda"
    assert model.sample(3, 1).device.type == "cuda"
