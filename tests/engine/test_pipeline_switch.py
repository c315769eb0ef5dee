"""PipelineSwitchHook: a new augmentation from a given epoch on, with exact resume across the switch."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
import torch.nn as nn

sys.path.insert(0, str(Path(__file__).parent))
from engine_toys import toy_batches  # noqa: E402

from kiln.data import build_train_loader  # noqa: E402
from kiln.data.datasets import ShapesDataset  # noqa: E402
from kiln.engine import Runner  # noqa: E402
from kiln.engine.hooks import HookError, PipelineSwitchHook  # noqa: E402

COLLECT = dict(type="Collect", keys=["img", "gt_bboxes", "gt_labels"])
# Before the switch: random flips; after it: random photometric distortion (what YOLOX-style
# configs do the other way round: strong augmentation first, plain last).
BASE = [
    dict(type="LoadImageFromFile"),
    dict(type="LoadAnnotations"),
    dict(type="RandomFlip", flip_ratio=0.5),
    dict(type="DefaultFormatBundle"),
    COLLECT,
]
SWITCHED = [
    dict(type="LoadImageFromFile"),
    dict(type="LoadAnnotations"),
    dict(type="PhotoMetricDistortion", brightness_delta=64),
    dict(type="DefaultFormatBundle"),
    COLLECT,
]


class BoxCounter(nn.Module):
    """Regresses the number of boxes from the image (real images in, a real loss out)."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.fc = nn.Linear(4, 1)

    def forward(self, batch):
        imgs = torch.stack([s["img"] for s in batch]) / 255.0
        pred = self.fc(self.conv(imgs).mean(dim=(2, 3))).squeeze(1)
        if not self.training:
            return [{"pred": p} for p in pred]
        target = torch.tensor([float(len(s["gt_bboxes"])) for s in batch])
        return {"loss_count": ((pred - target) ** 2).mean()}


@pytest.fixture(scope="module")
def shapes_root(tmp_path_factory):
    return str(tmp_path_factory.mktemp("shapes"))


def _dataset(root):
    return ShapesDataset(split="train", num_images=8, image_size=48, root=root, pipeline=BASE, min_size=None)


def _run(work_dir, root, switch=True, stop_after=None, resume=False, num_workers=0, loader=None):
    """Train 3 epochs of 4 batches; returns (per-iteration image sums, final weights)."""
    torch.manual_seed(0)
    model = BoxCounter()
    loader = loader or build_train_loader(_dataset(root), total_batch_size=2, seed=3, num_workers=num_workers)
    hooks = [dict(type="PipelineSwitchHook", switch_epoch=1, switch_pipeline=SWITCHED)] if switch else []
    r = Runner(
        model,
        work_dir=str(work_dir),
        train_dataloader=loader,
        max_epochs=3,
        optim_wrapper=dict(optimizer=dict(type="SGD", lr=0.01)),
        default_hooks=dict(logger=None),
        custom_hooks=hooks,
        resume=resume,
    )
    sums = []
    r.register_callback(
        lambda runner, idx, batch, out: sums.append(sum(float(s["img"].sum()) for s in batch)),
        "after_train_iter",
    )
    if stop_after is not None:  # a run stopped after that many epochs (its last checkpoint is the epoch's)

        def stop(runner):
            if runner.epoch + 1 == stop_after:
                runner.stop_training = True

        r.register_callback(stop, "after_train_epoch")
    r.train()
    return sums, [t.detach().clone() for t in model.state_dict().values()]


def _same(a, b):
    return len(a) == len(b) and all(torch.equal(x, y) for x, y in zip(a, b))


def test_the_switch_changes_the_samples_from_the_switch_epoch_on(tmp_path, shapes_root):
    switched, _ = _run(tmp_path / "a", shapes_root)
    plain, _ = _run(tmp_path / "b", shapes_root, switch=False)
    assert switched[:4] == plain[:4]  # the first epoch (switch_epoch=1: 0-based) keeps the pipeline
    assert all(a != b for a, b in zip(switched[4:], plain[4:]))  # epochs 2 and 3 are distorted


@pytest.mark.parametrize("stop_after", [1, 2], ids=["stopped_before_the_switch", "stopped_after_the_switch"])
def test_resume_across_the_switch_is_bit_identical(tmp_path, shapes_root, stop_after):
    full_sums, full_weights = _run(tmp_path / "full", shapes_root)
    first_sums, _ = _run(tmp_path / "part", shapes_root, stop_after=stop_after)
    assert first_sums == full_sums[: 4 * stop_after]
    resumed_sums, resumed_weights = _run(tmp_path / "part", shapes_root, resume=True)
    assert resumed_sums == full_sums[4 * stop_after :]
    assert _same(resumed_weights, full_weights)


def test_worker_processes_get_the_switched_pipeline(tmp_path, shapes_root):
    in_process, weights0 = _run(tmp_path / "w0", shapes_root)
    with_workers, weights2 = _run(tmp_path / "w2", shapes_root, num_workers=2)
    assert with_workers == in_process and _same(weights0, weights2)


class Marked:
    """A transform leaving a visible mark (the brightest possible image)."""

    def __call__(self, results):
        results["img"] = results["img"] * 0 + 255
        return results


def test_a_torch_loader_with_persistent_workers_restarts_them_with_the_new_pipeline(tmp_path, shapes_root):
    ds = _dataset(shapes_root)
    loader = torch.utils.data.DataLoader(
        ds, batch_size=2, num_workers=1, persistent_workers=True, collate_fn=list
    )
    switched = [
        dict(type="LoadImageFromFile"),
        dict(type="LoadAnnotations"),
        Marked(),
        dict(type="DefaultFormatBundle"),
        COLLECT,
    ]
    model = BoxCounter()
    r = Runner(
        model,
        work_dir=str(tmp_path),
        train_dataloader=loader,
        max_epochs=2,
        optim_wrapper=dict(optimizer=dict(type="SGD", lr=0.01)),
        default_hooks=dict(logger=None),
        custom_hooks=[PipelineSwitchHook(switch_epoch=1, switch_pipeline=switched)],
    )
    marked = []
    r.register_callback(
        lambda runner, idx, batch, out: marked.append(all(bool((s["img"] == 255).all()) for s in batch)),
        "after_train_iter",
    )
    r.train()
    assert marked == [False] * 4 + [True] * 4


def test_clear_errors(tmp_path, shapes_root):
    for bad in (-1, "2", 1.5, True):
        with pytest.raises(ValueError, match="switch_epoch must be an int >= 0"):
            PipelineSwitchHook(switch_epoch=bad, switch_pipeline=SWITCHED)
    for bad in ([], dict(type="Collect"), None):
        with pytest.raises(ValueError, match="switch_pipeline must be a non-empty list"):
            PipelineSwitchHook(switch_epoch=1, switch_pipeline=bad)
    with pytest.raises(KeyError, match="NoSuchTransform"):
        PipelineSwitchHook(switch_epoch=1, switch_pipeline=[dict(type="NoSuchTransform")])

    def runner(loader, **kw):
        model = BoxCounter()
        args = dict(
            work_dir=str(tmp_path),
            train_dataloader=loader,
            max_epochs=3,
            optim_wrapper=dict(optimizer=dict(type="SGD", lr=0.01)),
            default_hooks=dict(logger=None),
        )
        args.update(kw)
        return Runner(model, **args)

    loader = build_train_loader(_dataset(shapes_root), total_batch_size=2, seed=3)
    r = runner(loader, custom_hooks=[PipelineSwitchHook(switch_epoch=3, switch_pipeline=SWITCHED)])
    with pytest.raises(HookError, match=r"switch_epoch=3 but training has only 3 epochs"):
        r.train()
    r = runner(toy_batches(4), custom_hooks=[PipelineSwitchHook(switch_epoch=1, switch_pipeline=SWITCHED)])
    with pytest.raises(HookError, match="No dataset with a 'pipeline' under the training loader"):
        r.train()
    r = runner(
        loader,
        max_epochs=None,
        max_iters=4,
        custom_hooks=[PipelineSwitchHook(switch_epoch=1, switch_pipeline=SWITCHED)],
    )
    with pytest.raises(HookError, match="iteration-based"):
        r.train()
