"""kiln.image: imread/imwrite/imshow and resize/rescale/flip/pad/normalize."""

from __future__ import annotations

import uuid

import numpy as np
import pytest

from kiln import fileio, image


@pytest.fixture
def bgr():
    """A 20×30 BGR image with distinct channels: B=10, G=100, R=200, plus a gradient."""
    img = np.zeros((20, 30, 3), np.uint8)
    img[..., 0], img[..., 1], img[..., 2] = 10, 100, 200
    img[:, :, 1] += np.arange(30, dtype=np.uint8)[None, :]
    return img


def test_imwrite_creates_parent_dirs_and_imread_round_trips_png(tmp_path, bgr):
    path = tmp_path / "deep" / "dir" / "x.png"
    assert image.imwrite(bgr, path) is True
    np.testing.assert_array_equal(image.imread(path), bgr)
    np.testing.assert_array_equal(image.imread(str(path), channel_order="rgb"), bgr[..., ::-1])


def test_imread_flags(tmp_path, bgr):
    path = tmp_path / "x.png"
    image.imwrite(bgr, path)
    assert image.imread(path, flag="grayscale").shape == (20, 30)
    rgba = np.dstack([bgr, np.full((20, 30), 7, np.uint8)])
    image.imwrite(rgba, tmp_path / "a.png")
    assert image.imread(tmp_path / "a.png", flag="unchanged").shape == (20, 30, 4)
    assert image.imread(tmp_path / "a.png", flag="color").shape == (20, 30, 3)
    deep = (np.arange(600, dtype=np.uint16) * 100).reshape(20, 30)
    image.imwrite(deep, tmp_path / "d.png")
    assert image.imread(tmp_path / "d.png", flag="unchanged").dtype == np.uint16


def test_imread_from_bytes_uri_and_array(bgr):
    uri = f"memory://kiln-img-{uuid.uuid4().hex}/x.png"
    image.imwrite(bgr, uri)
    np.testing.assert_array_equal(image.imread(uri), bgr)
    np.testing.assert_array_equal(image.imread(fileio.get_bytes(uri)), bgr)
    assert image.imread(bgr) is bgr
    fileio.remove(uri)


def test_imwrite_rgb_channel_order(tmp_path, bgr):
    image.imwrite(bgr[..., ::-1].copy(), tmp_path / "x.png", channel_order="rgb")
    np.testing.assert_array_equal(image.imread(tmp_path / "x.png"), bgr)


def test_missing_and_corrupt_images_fail_naming_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.jpg"):
        image.imread(tmp_path / "nope.jpg")
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"not a jpeg at all")
    with pytest.raises(ValueError, match=r"broken\.jpg.*corrupt"):
        image.imread(bad)


def test_invalid_arguments_are_rejected(tmp_path, bgr):
    with pytest.raises(ValueError, match="flag must be one of"):
        image.imread(b"x", flag="colour")
    with pytest.raises(ValueError, match="channel_order"):
        image.imread(b"x", channel_order="gbr")
    with pytest.raises(ValueError, match="add a suffix"):
        image.imwrite(bgr, tmp_path / "noext")
    with pytest.raises(TypeError, match="imread needs"):
        image.imread(3.5)


def test_imshow_without_display_warns_and_returns(monkeypatch, bgr):
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    with pytest.warns(RuntimeWarning, match="no display"):
        image.imshow(bgr)


def test_imresize_and_scales(bgr):
    out, ws, hs = image.imresize(bgr, (60, 10), return_scale=True)
    assert out.shape == (10, 60, 3) and (ws, hs) == (2.0, 0.5)
    assert image.imresize(bgr, (15, 10), interpolation="nearest").shape == (10, 15, 3)
    with pytest.raises(ValueError, match="interpolation must be one of"):
        image.imresize(bgr, (15, 10), interpolation="cubic-ish")


def test_imrescale_keeps_aspect_ratio(bgr):
    out, factor = image.imrescale(bgr, 2.0, return_scale=True)
    assert out.shape == (40, 60, 3) and factor == 2.0
    # fit into (long=90, short=30): factor = min(90/30, 30/20) = 1.5
    out, factor = image.imrescale(bgr, (90, 30), return_scale=True)
    assert out.shape == (30, 45, 3) and factor == 1.5
    with pytest.raises(ValueError, match="positive"):
        image.imrescale(bgr, -1.0)


def test_imflip_directions(bgr):
    np.testing.assert_array_equal(image.imflip(bgr), bgr[:, ::-1])
    np.testing.assert_array_equal(image.imflip(bgr, "vertical"), bgr[::-1])
    np.testing.assert_array_equal(image.imflip(bgr, "diagonal"), bgr[::-1, ::-1])
    with pytest.raises(ValueError, match="direction must be one of"):
        image.imflip(bgr, "sideways")


def test_impad_to_shape_padding_and_values(bgr):
    out = image.impad(bgr, shape=(25, 32), pad_val=(1, 2, 3))
    assert out.shape == (25, 32, 3)
    np.testing.assert_array_equal(out[:20, :30], bgr)
    assert out[24, 31].tolist() == [1, 2, 3]
    out = image.impad(bgr, padding=(1, 2, 3, 4))
    assert out.shape == (26, 34, 3) and out[0, 0].tolist() == [0, 0, 0]
    np.testing.assert_array_equal(out[2:22, 1:31], bgr)
    edge = image.impad(bgr, padding=2, padding_mode="edge")
    np.testing.assert_array_equal(edge[0, 2:32], bgr[0])
    with pytest.raises(ValueError, match="smaller than the image"):
        image.impad(bgr, shape=(10, 10))
    with pytest.raises(ValueError, match="exactly one of"):
        image.impad(bgr)


def test_impad_many_channels(bgr):
    img = np.ones((4, 5, 6), np.float32)
    out = image.impad(img, shape=(6, 7), pad_val=-1)
    assert out.shape == (6, 7, 6) and out[5, 6, 5] == -1 and out[0, 0, 0] == 1


def test_impad_to_multiple(bgr):
    assert image.impad_to_multiple(bgr, 32).shape == (32, 32, 3)
    assert image.impad_to_multiple(bgr, 10).shape == (20, 30, 3)


def test_imnormalize_to_rgb_and_back(bgr):
    mean, std = [123.675, 116.28, 103.53], [58.395, 57.12, 57.375]
    out = image.imnormalize(bgr, mean, std, to_rgb=True)
    assert out.dtype == np.float32
    expected = (bgr[..., ::-1].astype(np.float32) - np.array(mean, np.float32)) / np.array(std, np.float32)
    np.testing.assert_allclose(out, expected, rtol=1e-6)
    np.testing.assert_allclose(image.imdenormalize(out, mean, std), bgr, atol=1e-3)
    with pytest.raises(ValueError, match="std must be non-zero"):
        image.imnormalize(bgr, mean, [1, 0, 1])


def test_color_conversions(bgr):
    np.testing.assert_array_equal(image.bgr2rgb(bgr), bgr[..., ::-1])
    np.testing.assert_array_equal(image.rgb2bgr(bgr[..., ::-1].copy()), bgr)
    gray = image.bgr2gray(bgr)
    assert gray.shape == (20, 30) and image.bgr2gray(bgr, keepdim=True).shape == (20, 30, 1)
    assert image.gray2bgr(gray).shape == (20, 30, 3)
