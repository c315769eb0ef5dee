"""Few-shot fixtures: a small shapes dataset split into base (circle, square) and novel (triangle) classes,
and a PCB classifier file."""

from __future__ import annotations

import pytest
from fewshot_fixtures import BASE_CLASSES, NOVEL_CLASSES


@pytest.fixture(scope="session")
def shapes_fewshot(tmp_path_factory):
    """Generated shapes data: 12 training and 4 test images of 64 pixels."""
    from kiln.data.datasets import generate_shapes_dataset

    root = tmp_path_factory.mktemp("fewshot_shapes")
    train = generate_shapes_dataset(str(root), num_images=12, image_size=64, split="train")
    test = generate_shapes_dataset(str(root), num_images=4, image_size=64, split="val")
    return dict(train_json=train["ann_file"], train_images=train["img_prefix"], test_json=test["ann_file"],
                test_images=test["img_prefix"], base_classes=BASE_CLASSES, novel_classes=NOVEL_CLASSES)


@pytest.fixture(scope="session")
def pcb_weights(tmp_path_factory):
    """A torchvision ResNet-18 state dict (random weights) as PCB's ImageNet classifier file."""
    import torch
    import torchvision

    path = tmp_path_factory.mktemp("pcb") / "resnet18.pth"
    torch.manual_seed(0)
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), path)
    return str(path)


@pytest.fixture(scope="session")
def fsunit(shapes_fewshot, tmp_path_factory):
    """The shapes family registered as ``fsunit_*`` (seed files generated for shots 1, 2 and seeds 0, 1)."""
    from kiln.data.fewshot import generate_coco_seed_files, register_fewshot_coco

    root = tmp_path_factory.mktemp("fsunit")
    d = shapes_fewshot
    generate_coco_seed_files(d["train_json"], str(root / "splits"), [1, 2], [0, 1],
                             d["base_classes"] + d["novel_classes"])
    seeds = str(root / "splits")
    names = register_fewshot_coco("fsunit", d["train_json"], d["train_images"], d["test_json"],
                                  d["test_images"], d["base_classes"], d["novel_classes"], seeds,
                                  [1, 2], [0, 1], cache_dir=str(root / "cache"))
    return dict(d, names=names, seed_root=str(root / "splits"))
