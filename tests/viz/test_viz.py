import pytest
import torch

import dgm
from dgm.viz import density_plot, image_grid, save_samples, training_curves


def is_png(path):
    return path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_image_grid_from_flat_and_nchw(tmp_path):
    assert is_png(image_grid(torch.rand(10, 64), tmp_path / "a.png", image_shape=(1, 8, 8)))
    assert is_png(image_grid(torch.rand(5, 3, 6, 6), tmp_path / "b.png", value_range=(0, 1), title="rgb"))
    with pytest.raises(dgm.DataError, match="image_shape"):
        image_grid(torch.rand(4, 10), tmp_path / "c.png")


def test_density_plot_with_model(tmp_path):
    model = dgm.build("independent", event_shape=(2,), support="real")
    assert is_png(density_plot(torch.randn(100, 2), tmp_path / "d.png", model=model, data=torch.randn(50, 2)))
    with pytest.raises(dgm.DataError, match=r"\(N, 2\)"):
        density_plot(torch.randn(10, 3), tmp_path / "e.png")


def test_save_samples_dispatches_on_kind(tmp_path):
    assert is_png(save_samples(torch.rand(4, 784), tmp_path / "i.png", {"kind": "image"}))  # 28×28 inferred
    path = save_samples(torch.tensor([[0, 1, 2]]), tmp_path / "t.png", {"kind": "text", "vocab": "abc"})
    assert path.suffix == ".txt" and path.read_text().strip() == "abc"


def test_training_curves(tmp_path):
    hist = [{"epoch": 1, "train_loss": 3.0, "valid_nll": 3.1}, {"epoch": 2, "train_loss": 2.0}]
    assert is_png(training_curves(hist, tmp_path / "c.png"))
