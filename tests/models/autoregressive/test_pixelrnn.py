"""PixelRNN (Row LSTM): causality, the recurrent receptive field, normalisation, sampling, conditioning."""

import math

import pytest
import torch

import dgm
from tests.models.autoregressive.helpers import dependence, full_dependence
from tests.models.helpers import all_configurations, perturb_parameters


def build(event_shape, support="binary", perturb=0.3, **options):
    options = {"channels": 4, "num_layers": 2, "kernel_size": 3, "first_kernel_size": 3, **options}
    model = dgm.build("pixelrnn", event_shape=event_shape, support=support, **options)
    if perturb:
        perturb_parameters(model, perturb)
    return model


# ------------------------------------------------------------------ causality
@pytest.mark.parametrize(
    ("shape", "layers", "kernel", "first", "support", "classes"),
    [
        ((1, 4, 4), 1, 3, 3, "binary", None),
        ((1, 5, 3), 2, 1, 3, "binary", 2),
        ((1, 3, 6), 3, 5, 7, "categorical(4)", 3),
        ((1, 4, 5), 0, 3, 5, "binary", None),
        ((2, 3, 3), 2, 3, 3, "binary", 2),
        ((3, 2, 3), 1, 5, 3, "categorical(3)", None),
    ],
)
def test_logits_depend_only_on_earlier_values(shape, layers, kernel, first, support, classes):
    C = shape[0]
    model = build(
        shape,
        support,
        channels=4 * C,
        num_layers=layers,
        kernel_size=kernel,
        first_kernel_size=first,
        num_classes=classes,
        output_channels=8 * C,
    ).double()
    if classes is not None:  # a nonzero class bias, so that the context path is exercised too
        with torch.no_grad():
            for m in model.modules():
                if isinstance(m, torch.nn.Embedding):
                    m.weight.normal_()
    context = None if classes is None else torch.tensor([classes - 1])
    dep = dependence(model, context)
    D = math.prod(shape)
    future = torch.arange(D)[None, :] >= torch.arange(D)[:, None]
    assert not (dep & future).any(), "a logit depends on its own or a later value"
    assert dep.any()


def test_recurrence_reaches_the_top_of_the_image():
    """Unlike a stack of convolutions, the Row LSTM carries information down every row: with a 3×3 first
    layer (one row up) and one layer, the last row's logits see the first row. The field is a triangle:
    row r - d is seen up to exactly d columns to the right (the first layer's one column, then one more per
    width-3 state-to-state step), so the pixels above and to the right beyond it are never seen."""
    H, W = 6, 7
    model = build((1, H, W), channels=8, num_layers=1, kernel_size=3, output_channels=32).double()
    dep = full_dependence(model).reshape(H, W, H, W)
    r, c = H - 1, 3
    assert dep[r, c, 0, c]  # five rows up: out of any 3×3 convolution's reach
    for d in range(1, H):
        right = torch.nonzero(dep[r, c, r - d]).flatten().max().item()
        assert right == min(c + d, W - 1), (d, right)


# ------------------------------------------------------------------ normalisation
@pytest.mark.parametrize("num_classes", [None, 3])
def test_normalises_over_all_binary_3x3_images(num_classes):
    model = build((1, 3, 3), num_classes=num_classes)
    if num_classes is not None:
        with torch.no_grad():
            for m in model.modules():
                if isinstance(m, torch.nn.Embedding):
                    m.weight.normal_()
    x = all_configurations(9).reshape(-1, 1, 3, 3)
    totals = []
    for label in range(num_classes or 1):
        context = None if num_classes is None else torch.full((len(x),), label)
        lp = model.log_prob(x, context)
        assert lp.shape == (512,) and (lp < 0).all()
        totals.append(torch.logsumexp(lp.double(), 0).exp().item())
    assert totals == pytest.approx([1.0] * len(totals), abs=1e-5)


@pytest.mark.parametrize(("shape", "support"), [((2, 2, 2), "binary"), ((1, 2, 3), "categorical(3)")])
def test_normalises_with_channels_and_categories(shape, support):
    model = build(shape, support, channels=4 * shape[0])
    k = model.num_categories
    x = all_configurations(math.prod(shape), k).reshape(-1, *shape)
    total = torch.logsumexp(model.log_prob(x).double(), 0).exp().item()
    assert total == pytest.approx(1.0, abs=1e-5)


# ------------------------------------------------------------------ sampling
def _tv_check(model, shape, k, context_label=None, n=20_000):
    d = math.prod(shape)
    configs = all_configurations(d, k)
    ctx_all = None if context_label is None else torch.full((len(configs),), context_label)
    p = model.log_prob(configs.reshape(-1, *shape), ctx_all).double().exp()
    ctx = None if context_label is None else torch.full((n,), context_label)
    s = model.sample(n, ctx, generator=torch.Generator().manual_seed(1))
    assert s.shape == (n, *shape) and s.dtype == torch.float32
    codes = (s.reshape(n, d).long() * (k ** torch.arange(d - 1, -1, -1))).sum(1)
    freq = torch.bincount(codes, minlength=k**d).double() / n
    tv = 0.5 * (freq - p).abs().sum().item()
    # As in tests/models/test_common.py: 4x the expected TV of an exact sampler.
    bound = 4 * 0.5 * math.sqrt(2 / math.pi) * (p * (1 - p) / n).sqrt().sum().item()
    assert tv < bound, (tv, bound)


def test_samples_match_density_on_a_2x2_image():
    _tv_check(build((1, 2, 2), perturb=0.6), (1, 2, 2), 2)


def test_samples_match_density_with_categories_and_channels():
    _tv_check(build((2, 1, 2), "categorical(3)", channels=8), (2, 1, 2), 3, n=30_000)


def test_conditional_samples_match_density_for_each_class():
    model = build((1, 1, 3), num_classes=2)
    with torch.no_grad():  # make the classes differ visibly
        for m in model.modules():
            if isinstance(m, torch.nn.Embedding):
                m.weight.normal_()
    for label in (0, 1):
        _tv_check(model, (1, 1, 3), 2, label)


def test_seeded_conditional_sampling():
    model = build((1, 3, 3), num_classes=3)
    a = model.sample(6, 2, generator=torch.Generator().manual_seed(5))  # an int label is broadcast
    b = model.sample(6, torch.full((6,), 2), generator=torch.Generator().manual_seed(5))
    c = model.sample(6, torch.full((6,), 2), generator=torch.Generator().manual_seed(6))
    assert torch.equal(a, b) and a.shape == (6, 1, 3, 3)
    assert not torch.equal(a, c)


# ------------------------------------------------------------------ learning
def test_recovers_a_small_distribution():
    """Minimising the exact cross-entropy to a distribution over 2×2 binary images recovers it."""
    torch.manual_seed(0)
    model = build((1, 2, 2), perturb=0, channels=8)
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
def test_conditional_round_trip_and_context_errors(tmp_path):
    from dgm.core.checkpoint import save_model

    model = build((1, 3, 3), num_classes=4)
    assert model.conditional and not build((1, 3, 3)).conditional
    x = torch.randint(0, 2, (5, 1, 3, 3)).float()
    y = torch.tensor([0, 1, 2, 3, 0])
    save_model(model, tmp_path)
    loaded = dgm.load(tmp_path)
    assert loaded.config == model.config
    assert dgm.build(model.config).config == model.config
    assert torch.equal(model.log_prob(x, y), loaded.log_prob(x, y))
    with pytest.raises(dgm.DataError, match="pass context"):
        model.log_prob(x)
    with pytest.raises(dgm.DataError, match="out of range"):
        model.log_prob(x, torch.tensor([0, 1, 2, 4, 0]))
    with pytest.raises(dgm.DataError, match="takes no context"):
        build((1, 3, 3)).log_prob(x, y)


def test_bad_configurations():
    with pytest.raises(dgm.ConfigError, match="event_shape must be"):
        dgm.build("pixelrnn", event_shape=(9,))
    with pytest.raises(dgm.ConfigError, match="support"):
        dgm.build("pixelrnn", event_shape=(1, 3, 3), support="real")
    with pytest.raises(dgm.ConfigError, match="odd"):
        dgm.build("pixelrnn", event_shape=(1, 3, 3), kernel_size=4)
    with pytest.raises(dgm.ConfigError, match="odd"):
        dgm.build("pixelrnn", event_shape=(1, 3, 3), first_kernel_size=1)
    with pytest.raises(dgm.ConfigError, match="channels"):
        dgm.build("pixelrnn", event_shape=(1, 3, 3), channels=5)
    with pytest.raises(dgm.ConfigError, match="multiple of twice the number of data channels"):
        dgm.build("pixelrnn", event_shape=(3, 3, 3), channels=12 + 3)
    with pytest.raises(dgm.ConfigError, match="num_layers"):
        dgm.build("pixelrnn", event_shape=(1, 3, 3), num_layers=-1)


def test_free_parameters_exclude_masked_weights():
    model = build((1, 4, 4))
    total = sum(p.numel() for p in model.parameters())
    assert 0 < model.num_parameters() < total


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_runs_on_cuda():
    model = build((1, 3, 3), num_classes=2).cuda()
    x = torch.randint(0, 2, (4, 1, 3, 3)).float().cuda()
    y = torch.tensor([0, 1, 0, 1]).cuda()
    assert model.log_prob(x, y).device.type == "cuda"
    assert model.sample(3, 1).device.type == "cuda"
