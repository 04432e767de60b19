"""Mask specs: geometric masks on the image layout, random masks, mask files, one-line errors."""

import numpy as np
import pytest
import torch

from dgm.core.errors import DataError
from dgm.tasks.masks import parse_mask


def test_geometric_masks_on_images_and_flat_vectors():
    img = parse_mask("bottom-half", (1, 4, 4))
    assert img.dtype == torch.bool and img.shape == (1, 4, 4)
    assert img[0, 2:].all() and not img[0, :2].any()
    # A flat (16,) model of 4x4 images gets the same mask, flattened in raster order.
    flat = parse_mask("bottom-half", (16,), image_shape=(1, 4, 4))
    assert torch.equal(flat, img.reshape(16))
    left = parse_mask("left-half", (1, 4, 4))
    assert left[0, :, :2].all() and not left[0, :, 2:].any()
    center = parse_mask("center", (1, 4, 4))
    assert center.sum() == 4 and center[0, 1:3, 1:3].all()
    # Colour images: every channel of a pixel is missing together.
    rgb = parse_mask("right-half", (3, 2, 4))
    assert rgb[:, :, 2:].all() and not rgb[:, :, :2].any()


def test_sequence_masks_and_random_masks():
    seq = parse_mask("bottom-half", (10,))
    assert seq[5:].all() and not seq[:5].any()  # the continuation of a prefix
    assert parse_mask("center", (8,)).nonzero().flatten().tolist() == [2, 3, 4, 5]
    g = torch.Generator().manual_seed(int(torch.randint(1000, ())))
    r = parse_mask("random:0.3", (50, 40), generator=g)
    assert abs(r.float().mean().item() - 0.3) < 0.05
    with pytest.raises(DataError, match="needs image data"):
        parse_mask("left-half", (10,))


def test_mask_files(tmp_path):
    m = torch.rand(1, 3, 3) < 0.5
    m[0, 0, 0] = True
    np.save(tmp_path / "m.npy", m.numpy())
    assert torch.equal(parse_mask(str(tmp_path / "m.npy"), (1, 3, 3)), m)
    np.save(tmp_path / "hw.npy", m[0].numpy().astype(np.int64))  # (H, W) of 0/1 numbers, flat model
    assert torch.equal(parse_mask(str(tmp_path / "hw.npy"), (9,), image_shape=(1, 3, 3)), m.reshape(9))
    from matplotlib.image import imsave

    imsave(tmp_path / "m.png", m[0].numpy().astype(float), cmap="gray", vmin=0, vmax=1)
    assert torch.equal(parse_mask(str(tmp_path / "m.png"), (1, 3, 3)), m)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("diagonal", "unknown mask 'diagonal'"),
        ("random:1.5", "probability must be in (0, 1)"),
        ("random:x", "needs a probability"),
        ("nofile.npy", "does not exist"),
        ("BAD_SHAPE", "has shape (2, 2)"),
        ("BAD_VALUES", "booleans or 0/1"),
        ("EMPTY", "marks no value missing"),
    ],
)
def test_bad_masks_are_one_line_errors(spec, message, tmp_path):
    np.save(tmp_path / "shape.npy", np.ones((2, 2), dtype=bool))
    np.save(tmp_path / "values.npy", np.full((1, 3, 3), 2))
    np.save(tmp_path / "empty.npy", np.zeros((1, 3, 3), dtype=bool))
    files = {"BAD_SHAPE": "shape.npy", "BAD_VALUES": "values.npy", "EMPTY": "empty.npy"}
    spec = str(tmp_path / files[spec]) if spec in files else spec
    with pytest.raises(DataError) as e:
        parse_mask(spec, (1, 3, 3))
    assert message in str(e.value) and "\n" not in str(e.value)


def test_tensor_masks_must_be_boolean():
    with pytest.raises(DataError, match="boolean"):
        parse_mask(torch.ones(4), (4,))
    with pytest.raises(DataError, match="shape"):
        parse_mask(torch.ones(3, dtype=torch.bool), (4,))
