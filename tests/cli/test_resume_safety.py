"""``--resume`` / ``resume=True`` never silently start over when a previous run is in the work dir.

A pointer that cannot be followed (gone file, unreadable or empty pointer, checkpoints without a pointer)
is an error listing the checkpoints present, and nothing in the work dir is touched (issue 13).
"""

from __future__ import annotations

import pytest

from kiln.engine.checkpoint import find_resume_checkpoint


def _run_dir(tmp_path, pointer: bytes | None, files=("epoch_1.pth", "epoch_2.pth")):
    work = tmp_path / "work"
    work.mkdir()
    for name in files:
        (work / name).write_bytes(b"checkpoint " + name.encode())
    if pointer is not None:
        (work / "last_checkpoint").write_bytes(pointer)
    return work


def test_a_followable_pointer_or_an_empty_work_dir_resume_as_before(tmp_path):
    work = _run_dir(tmp_path, b"epoch_2.pth\n")
    assert find_resume_checkpoint(str(work)) == str(work / "epoch_2.pth")
    empty = tmp_path / "empty"
    empty.mkdir()
    assert find_resume_checkpoint(str(empty)) is None
    assert find_resume_checkpoint(str(tmp_path / "never_created")) is None


@pytest.mark.parametrize("pointer, says", [
    (b"epoch_3.pth", "names 'epoch_3.pth', which does not exist"),
    (b"\xff\xfe\x00garbage", "cannot read"),
    (b"  \n", "is empty"),
    (None, "no last_checkpoint pointer"),
])
def test_a_pointer_that_cannot_be_followed_is_an_error_listing_the_checkpoints(tmp_path, pointer, says):
    work = _run_dir(tmp_path, pointer)
    with pytest.raises(FileNotFoundError, match=says) as err:
        find_resume_checkpoint(str(work))
    assert "epoch_1.pth, epoch_2.pth" in str(err.value) and "--resume-from" in str(err.value)


def test_kiln_train_resume_with_a_dangling_pointer_exits_2_and_leaves_the_run_alone(tmp_path, kiln):
    work = _run_dir(tmp_path, b"epoch_3.pth")
    before = {p.name: p.read_bytes() for p in work.iterdir()}
    proc = kiln("train", "kiln::shapes/retinanet_r18_fpn_shapes.py", "--work-dir", str(work), "--resume")
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "epoch_3.pth" in proc.stderr and "epoch_1.pth, epoch_2.pth" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert {p.name: p.read_bytes() for p in work.iterdir()} == before  # nothing written, nothing removed


def test_runner_resume_true_refuses_a_dangling_pointer(tmp_path):
    """The same rule for ``Runner(resume=True)`` (a config's ``resume=True``), before anything is written."""
    import torch
    import torch.nn as nn

    from kiln.engine import Runner

    class Toy(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(2, 1)

        def forward(self, batch):
            return {"loss": self.fc(torch.stack([s["x"] for s in batch])).pow(2).mean()}

    work = _run_dir(tmp_path, b"epoch_3.pth")
    before = {p.name: p.read_bytes() for p in work.iterdir()}
    data = [[{"x": torch.ones(2)}] for _ in range(2)]
    runner = Runner(Toy(), work_dir=str(work), train_dataloader=data, max_epochs=1, resume=True,
                    optim_wrapper=dict(optimizer=dict(type="SGD", lr=0.1)))
    with pytest.raises(FileNotFoundError, match="names 'epoch_3.pth', which does not exist"):
        runner.train()
    assert {p.name: p.read_bytes() for p in work.iterdir() if p.suffix == ".pth"} == {
        k: v for k, v in before.items() if k.endswith(".pth")}


def test_resume_after_changing_the_model_fails_at_load_time_naming_the_difference(tmp_path, kiln):
    """Before: the changed model loaded what fit, then the optimizer state (shaped for the old
    parameters) failed inside the first step. Now: exit 2 at load, the run's files untouched."""
    work = tmp_path / "w"
    tiny = ["data.train.num_images=2", "data.train.image_size=64", "data.samples_per_gpu=2",
            "data.workers_per_gpu=0", "total_epochs=1", "log_config.interval=1"]
    cfg = "kiln::shapes/retinanet_r18_fpn_shapes.py"
    first = kiln("train", cfg, "--work-dir", str(work), "--no-validate", "--cfg-options", *tiny)
    assert first.returncode == 0, first.stderr[-2000:]
    before = {p.name: p.read_bytes() for p in work.glob("*.pth")}
    again = kiln("train", cfg, "--work-dir", str(work), "--no-validate", "--resume", "--cfg-options",
                 *tiny, "total_epochs=2", "model.bbox_head.feat_channels=32")
    assert again.returncode == 2, again.stderr[-2000:]
    assert f"cannot resume from '{work / 'epoch_1.pth'}'" in again.stderr
    assert "different model" in again.stderr and "parameters of another shape" in again.stderr
    assert "bbox_head" in again.stderr and "--load-from" in again.stderr and "Traceback" not in again.stderr
    assert {p.name: p.read_bytes() for p in work.glob("*.pth")} == before
