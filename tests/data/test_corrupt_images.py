"""Truncated or damaged images fail naming the file, or are skipped and counted when asked."""

from __future__ import annotations

import json
import logging

import cv2
import numpy as np
import pytest

from kiln.data.transforms.pipelines import CorruptImageError, LoadImageFromFile, read_image_file


def _image(path, seed=0):
    rng = np.random.default_rng(seed)
    img = (rng.random((48, 64, 3)) * 255).astype(np.uint8)
    assert cv2.imwrite(str(path), img)
    return path


def _truncate(path, keep=0.5):
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    return path


@pytest.mark.parametrize("suffix", [".jpg", ".png"])
def test_a_truncated_image_is_an_error_naming_the_file(tmp_path, suffix):
    good = _image(tmp_path / f"good{suffix}")
    assert read_image_file(str(good)).shape == (48, 64, 3)
    bad = _truncate(_image(tmp_path / f"bad{suffix}", 1))
    with pytest.raises(CorruptImageError, match=rf"'{bad}' is truncated.*skip_corrupt=True"):
        read_image_file(str(bad))


def test_a_complete_jpeg_with_trailing_padding_is_fine(tmp_path):
    path = _image(tmp_path / "pad.jpg")
    path.write_bytes(path.read_bytes() + b"\0" * 16)
    assert read_image_file(str(path)).shape == (48, 64, 3)


def test_garbage_bytes_are_an_error_naming_the_file_with_both_decoders(tmp_path):
    path = tmp_path / "x.jpg"
    path.write_bytes(b"not an image at all")
    for backend in ("cv2", "pillow"):
        with pytest.raises(CorruptImageError, match="x.jpg"):
            LoadImageFromFile(imdecode_backend=backend)({"img_info": {"filename": str(path)}})


def test_skip_corrupt_rejects_the_sample_warns_and_counts(tmp_path, caplog):
    bad = _truncate(_image(tmp_path / "bad.jpg"))
    load = LoadImageFromFile(skip_corrupt=True)
    with caplog.at_level(logging.WARNING):
        assert load({"img_info": {"filename": str(bad)}}) is None
        assert load({"img_info": {"filename": str(bad)}}) is None
    assert load.skipped == 2 and "bad.jpg (2 skipped so far" in caplog.text


def test_a_training_dataset_draws_another_image_instead_of_a_corrupt_one(tmp_path):
    from kiln.data.datasets.custom import CustomDataset

    _image(tmp_path / "a.jpg")
    _truncate(_image(tmp_path / "b.jpg", 1))
    ann = [{"filename": name, "width": 64, "height": 48,
            "ann": {"bboxes": [[2.0, 2.0, 30.0, 30.0]], "labels": [0]}} for name in ("a.jpg", "b.jpg")]
    (tmp_path / "ann.json").write_text(json.dumps(ann))
    pipeline = [dict(type="LoadImageFromFile", skip_corrupt=True)]
    ds = CustomDataset(ann_file=str(tmp_path / "ann.json"), pipeline=pipeline, img_prefix=str(tmp_path),
                       classes=["thing"])
    for _ in range(5):
        assert ds[1]["img_info"]["filename"] == "a.jpg"
    strict = CustomDataset(ann_file=str(tmp_path / "ann.json"), img_prefix=str(tmp_path), classes=["thing"],
                           pipeline=[dict(type="LoadImageFromFile")])
    with pytest.raises(CorruptImageError, match="b.jpg"):
        strict[1]
