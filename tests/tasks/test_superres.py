"""Super-resolution: downsampling, consistency error, conditional sampling and training on low-res context."""

import pytest
import torch

import dgm
from dgm.data.dataset import Dataset
from dgm.tasks.superres import (
    SuperResolution,
    consistency_error,
    downsample,
    evaluate_super_resolution,
    low_resolution,
    super_resolve,
    superres_grid,
    upsample,
)


def tiny(name="gated-pixelcnn", event_shape=(1, 4, 4), context_shape=(1, 2, 2), **options):
    options = {"channels": 8, "num_layers": 1, "kernel_size": 3, "first_kernel_size": 3, **options}
    return dgm.build(name, event_shape=event_shape, context_shape=context_shape, **options)


# ------------------------------------------------------------------ downsampling
def test_downsample_binary_gives_fraction_of_ones():
    x = torch.tensor([[1, 1, 0, 0], [1, 0, 0, 0], [1, 1, 1, 1], [1, 1, 1, 0]]).float()[None, None]
    low = downsample(x, 2)
    torch.testing.assert_close(low, torch.tensor([[[[0.75, 0.0], [1.0, 0.75]]]]))
    assert downsample(x, 4).item() == pytest.approx(10 / 16)
    torch.testing.assert_close(downsample(x, 1), x)


def test_downsample_categorical_divides_by_k_minus_one_and_keeps_leading_dims():
    x = torch.tensor([[0, 2], [2, 2]]).float().reshape(1, 1, 1, 2, 2).expand(3, 2, 1, 2, 2)
    low = downsample(x, 2, "categorical(3)")
    assert low.shape == (3, 2, 1, 1, 1)
    torch.testing.assert_close(low, torch.full((3, 2, 1, 1, 1), 0.75))
    low = torch.rand(5, 2, 3, 3)
    torch.testing.assert_close(downsample(upsample(low, 4), 4, "real"), low)
    assert upsample(low, 4).shape == (5, 2, 12, 12)


def test_downsample_errors():
    with pytest.raises(dgm.DataError, match="does not divide the image size 28x28"):
        downsample(torch.zeros(2, 1, 28, 28), 3)
    with pytest.raises(dgm.DataError, match="factor must be a positive int"):
        downsample(torch.zeros(2, 1, 4, 4), 0)
    with pytest.raises(dgm.DataError, match="factor must be a positive int"):
        downsample(torch.zeros(2, 1, 4, 4), True)
    with pytest.raises(dgm.DataError, match="\\(\\.\\.\\., C, H, W\\)"):
        downsample(torch.zeros(4, 4), 2)
    with pytest.raises(dgm.DataError, match="torch.Tensor"):
        downsample([[0.0]], 2)


# ------------------------------------------------------------------ consistency error
def test_consistency_error_on_known_inputs():
    low = torch.tensor([[[[1.0, 0.0], [0.0, 1.0]]], [[[0.0, 0.0], [1.0, 1.0]]]])  # (2, 1, 2, 2)
    exact = upsample(low, 2)  # (2, 1, 4, 4)
    assert consistency_error(exact, low, 2) == 0.0
    samples = torch.stack([exact, exact], 1).clone()  # (2, S=2, 1, 4, 4)
    samples[0, 1, 0, 0, 0] = 0  # one pixel flipped in one 2×2 block: that cell is off by 1/4
    per = consistency_error(samples, low, 2, per_example=True)
    # example 0: sample 0 exact, sample 1 one cell of four off by 0.25 → (0 + 0.0625) / 2
    torch.testing.assert_close(per, torch.tensor([0.03125, 0.0]))
    assert consistency_error(samples, low, 2) == pytest.approx(0.015625)
    # Unrelated samples: all zeros against an all-ones input is the worst case, 1.
    assert consistency_error(torch.zeros(2, 1, 4, 4), torch.ones(2, 1, 2, 2), 2) == 1.0
    # Categorical images are compared on the [0, 1] scale.
    assert consistency_error(torch.full((1, 1, 2, 2), 2.0), torch.ones(1, 1, 1, 1), 2, "categorical(3)") == 0


def test_consistency_error_shape_errors():
    with pytest.raises(dgm.DataError, match="need \\(2, 1, 2, 2\\)"):
        consistency_error(torch.zeros(2, 1, 4, 4), torch.zeros(2, 1, 3, 3), 2)
    with pytest.raises(dgm.DataError, match="need \\(2, 1, 2, 2\\)"):
        consistency_error(torch.zeros(2, 1, 4, 4), torch.zeros(3, 1, 2, 2), 2)
    with pytest.raises(dgm.DataError, match="\\(N, S, C, H, W\\)"):
        consistency_error(torch.zeros(2, 4, 4), torch.zeros(2, 1, 2, 2), 2)


# ------------------------------------------------------------------ datasets
def test_low_resolution_replaces_y_with_images():
    x = torch.randint(0, 2, (6, 16)).float()
    ds = Dataset(
        "toy", "train", x, torch.arange(6), "binary", kind="image", image_shape=(1, 4, 4), num_classes=6
    )
    low = low_resolution(ds, 2)
    assert low.y.shape == (6, 1, 2, 2) and low.y.dtype == torch.float32
    assert low.num_classes is None and low.x is ds.x
    torch.testing.assert_close(low.y, downsample(x.reshape(6, 1, 4, 4), 2))
    assert low.take(2).y.shape == (2, 1, 2, 2)
    with pytest.raises(dgm.DataError, match="not image data"):
        low_resolution(Dataset("v", "train", x, support="binary"), 2)


def test_low_resolution_of_binarized_mnist_is_7x7():
    try:
        ds = dgm.data.load("binarized-mnist", "valid").take(5).reshape_to((1, 28, 28))
    except dgm.DgmError as e:  # the data directory is not there
        pytest.skip(str(e))
    low = low_resolution(ds, 4)
    assert low.y.shape == (5, 1, 7, 7)
    assert ((low.y * 16) == (low.y * 16).round()).all()  # fractions of 16 pixels


# ------------------------------------------------------------------ sampling
def test_super_resolve_shapes_and_seed():
    torch.manual_seed(0)
    model = tiny()
    low = torch.rand(3, 1, 2, 2)
    a = super_resolve(model, low, 2, generator=torch.Generator().manual_seed(1))
    b = super_resolve(model, low, 2, generator=torch.Generator().manual_seed(1))
    c = super_resolve(model, low, 2, generator=torch.Generator().manual_seed(1), batch_size=4)
    assert a.shape == c.shape == (3, 2, 1, 4, 4)
    assert torch.equal(a, b)
    assert set(a.unique().tolist()) <= {0.0, 1.0}


def test_evaluate_super_resolution_and_grid(tmp_path):
    torch.manual_seed(0)
    model = tiny()
    x = torch.randint(0, 2, (3, 1, 4, 4)).float()
    res = evaluate_super_resolution(model, x, 2, num_samples=2, generator=torch.Generator().manual_seed(0))
    assert isinstance(res, SuperResolution)
    assert res.samples.shape == (3, 2, 1, 4, 4) and res.low.shape == (3, 1, 2, 2)
    assert res.log_prob.shape == (3,) and (res.log_prob < 0).all()
    torch.testing.assert_close(res.log_prob, model.log_prob(x, downsample(x, 2)).detach())
    assert res.consistency == pytest.approx(float(res.consistency_per_example.mean()))
    assert res.consistency == pytest.approx(consistency_error(res.samples, res.low, 2))
    text = res.describe()
    assert "\n" not in text and "consistency error" in text and "conditional NLL =" in text
    path = superres_grid(res.low, res.samples, 2, tmp_path / "grid.png", truth=x, title="t")
    assert path.read_bytes()[:4] == b"\x89PNG"


def test_errors_name_the_problem():
    x = torch.randint(0, 2, (2, 1, 4, 4)).float()
    with pytest.raises(dgm.DataError, match="not conditioned on an image"):
        super_resolve(
            dgm.build("gated-pixelcnn", event_shape=(1, 4, 4), channels=4), torch.rand(2, 1, 2, 2), 1
        )
    with pytest.raises(dgm.DataError, match="not conditioned on an image"):
        evaluate_super_resolution(dgm.build("independent", event_shape=(1, 4, 4), support="binary"), x, 2)
    model = tiny()
    with pytest.raises(dgm.DataError, match="context_shape=\\[1, 2, 2\\]"):
        super_resolve(model, torch.rand(2, 1, 4, 4), 1)
    with pytest.raises(dgm.DataError, match="num_samples must be a positive int"):
        super_resolve(model, torch.rand(2, 1, 2, 2), 0)
    with pytest.raises(dgm.DataError, match="factor 4 turns .* conditioned on \\(1, 2, 2\\)"):
        evaluate_super_resolution(model, x, 4)
    with pytest.raises(dgm.DataError, match="does not divide"):
        evaluate_super_resolution(model, x, 3)
    with pytest.raises(dgm.DataError, match="1 low-resolution images for 2 images"):
        evaluate_super_resolution(model, x, 2, low=torch.rand(1, 1, 2, 2))


# ------------------------------------------------------------------ learning
def test_trained_conditional_model_is_consistent_and_beats_unconditional():
    """x is the 2× nearest upsampling of a random binary 2×2 image h, so x is determined by h. A conditional
    model trained with dgm.train on low_resolution(data) (y = h as context) learns to copy it; an
    unconditional model of the same size cannot."""
    g = torch.Generator().manual_seed(0)
    h = torch.randint(0, 2, (1000, 1, 2, 2), generator=g).float()
    data = Dataset("blocks", "train", upsample(h, 2), support="binary", kind="image", image_shape=(1, 4, 4))
    train = low_resolution(data, 2)
    opts = {"epochs": 6, "batch_size": 50, "lr": 1e-2, "patience": None, "progress": False, "seed": 0}
    torch.manual_seed(0)
    conditional = tiny()
    dgm.train(conditional, train, **opts)
    torch.manual_seed(0)
    unconditional = tiny(context_shape=None)
    dgm.train(unconditional, data, **opts)
    test_h = torch.randint(0, 2, (64, 1, 2, 2), generator=g).float()
    test_x = upsample(test_h, 2)
    cond = evaluate_super_resolution(conditional, test_x, 2, 2, generator=torch.Generator().manual_seed(1))
    uncond = unconditional.sample(128, generator=torch.Generator().manual_seed(1)).reshape(64, 2, 1, 4, 4)
    err_u = consistency_error(uncond, test_h, 2)
    assert cond.consistency < 0.05
    assert err_u > 0.25
    # dgm.evaluate passes y (the low-res image) as context too: the conditional NLL is near 0 nats.
    res = dgm.evaluate(conditional, low_resolution(Dataset("b", "test", test_x, support="binary"), 2))
    assert res["nll"] < 1.0 < dgm.evaluate(unconditional, test_x)["nll"]
