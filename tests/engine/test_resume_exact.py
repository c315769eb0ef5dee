"""Acceptance: SIGKILL at random points (mid-epoch, mid-save), resume, and end bit-identical."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
CHILD = os.path.join(HERE, "resume_child.py")
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)


class _Child:
    """A fresh ``python resume_child.py WORK_DIR MODE ...`` process, as a user restarts a killed run.

    Fresh interpreters (not forks of the test worker) so that nothing an earlier test left in the
    worker process (threads, global flags, caches) reaches the runs being compared.
    """

    def __init__(self, work_dir: str, mode: str, *extra: str) -> None:
        env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1",
                   PYTHONPATH=os.pathsep.join(p for p in (REPO, os.environ.get("PYTHONPATH")) if p))
        self._proc = subprocess.Popen(
            [sys.executable, CHILD, work_dir, mode, *extra],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1, env=env,
        )
        self.pid = self._proc.pid
        self.stdout = self._proc.stdout
        self.returncode: int | None = None

    def wait(self) -> int:
        self.returncode = self._proc.wait()
        self.stdout.close()
        return self.returncode


def _spawn(work_dir: str, mode: str, *extra: str) -> _Child:
    return _Child(work_dir, mode, *extra)


def _run_until(proc: _Child, marker: str) -> list[str]:
    """Read the child's output until ``marker`` appears, then SIGKILL it."""
    seen = []
    for line in proc.stdout:
        seen.append(line.rstrip())
        if line.strip() == marker:
            os.kill(proc.pid, signal.SIGKILL)
            break
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, f"child did not reach {marker!r}:\n" + "\n".join(seen[-30:])
    return seen


def _run_to_end(proc: _Child) -> list[str]:
    out = proc.stdout.read()
    proc.wait()
    assert proc.returncode == 0, out[-3000:]
    return out.splitlines()


def _reference_state(tmp_path, mode: str) -> dict:
    """The uninterrupted run's final model and optimizer state (a fresh process, like the others)."""
    work = str(tmp_path / f"ref_{mode}")
    assert "DONE" in _run_to_end(_spawn(work, mode))
    return torch.load(os.path.join(work, "final_state.pt"), weights_only=True)


def _assert_bit_identical(a, b, where: str = "") -> None:
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b), f"differs at {where}"
    elif isinstance(a, dict):
        assert set(a) == set(b), f"keys differ at {where}: {set(a) ^ set(b)}"
        for k in a:
            _assert_bit_identical(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), f"length differs at {where}"
        for i, (x, y) in enumerate(zip(a, b)):
            _assert_bit_identical(x, y, f"{where}[{i}]")
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


def test_sigkill_mid_epoch_mid_save_and_at_epoch_end_then_resume_is_bit_identical(tmp_path):
    rng = random.Random()
    k1 = rng.randint(2, 6)  # inside epoch 0 (8 iterations per epoch)
    k2 = rng.randint(10, 14)  # killed half-way through writing the checkpoint after iteration k2
    work = str(tmp_path / "killed")
    points = f"kill points: ITER {k1}, mid-save after ITER {k2}, ITER 16 (epoch end)"
    reference = _reference_state(tmp_path, "epoch")

    _run_until(_spawn(work, "epoch"), f"ITER {k1}")
    _run_until(_spawn(work, "epoch", "--kill-in-save", str(k2)), "IN_SAVE")
    # The interrupted write left a partial temp file; the pointer still names a complete checkpoint.
    partial = [p for p in os.listdir(work) if p.startswith(".") and f"iter_{k2}" in p]
    assert partial, f"no partial temp file of iter_{k2} left by the kill ({points})"
    with open(os.path.join(work, "last_checkpoint")) as f:
        assert f.read().strip() == f"iter_{k2 - 1}.pth", points
    _run_until(_spawn(work, "epoch"), "ITER 16")
    lines = _run_to_end(_spawn(work, "epoch"))
    assert "DONE" in lines

    resumed = torch.load(os.path.join(work, "final_state.pt"), weights_only=True)
    _assert_bit_identical(reference, resumed, points)


def test_resumed_run_does_not_repeat_iterations_it_already_checkpointed(tmp_path):
    work = str(tmp_path / "w")
    reference = _reference_state(tmp_path, "iter")
    seen = _run_until(_spawn(work, "iter"), "ITER 9")
    done_before = max(int(s.split()[1]) for s in seen if s.startswith("ITER"))
    with open(os.path.join(work, "last_checkpoint")) as f:
        ckpt_iter = int(f.read().strip()[len("iter_") : -len(".pth")])
    assert ckpt_iter in (done_before - 1, done_before)
    lines = _run_to_end(_spawn(work, "iter"))
    iters = [int(s.split()[1]) for s in lines if s.startswith("ITER")]
    assert iters == list(range(ckpt_iter + 1, 25))
    resumed = torch.load(os.path.join(work, "final_state.pt"), weights_only=True)
    _assert_bit_identical(reference, resumed, "iteration-based run")
