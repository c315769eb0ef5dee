"""A checkpoint that cannot be written (disk full, file-size quota, ...) is one message naming the file
and the OS error; the previous checkpoint and its pointer stay intact and no temp file is left.

The write failure is real: a child process runs under ``RLIMIT_FSIZE`` (the kernel refuses writes past
the limit with EFBIG, as it refuses them with ENOSPC on a full disk), so torch.save fails mid-file.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest
import torch

from kiln.engine.checkpoint import Checkpointer

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CFG = "kiln::shapes/retinanet_r18_fpn_shapes.py"
LIMITED = textwrap.dedent("""
    import resource, signal, sys
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # (the kernel's default for an over-limit write kills)
    limit = int(sys.argv[1])
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    sys.argv = sys.argv[2:]
""")


def _run_limited(limit: int, code: str, *args: str, cwd: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=REPO, OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, "-c", LIMITED + textwrap.dedent(code), str(limit), *args],
                          capture_output=True, text=True, cwd=cwd, env=env, timeout=600)


def test_a_failed_save_names_the_file_and_keeps_the_previous_checkpoint(tmp_path):
    small = torch.nn.Linear(4, 4)
    Checkpointer(small, str(tmp_path)).save("model_small")
    before = (tmp_path / "model_small.pth").read_bytes()
    proc = _run_limited(200_000, """
        import sys, torch
        from kiln.engine.checkpoint import Checkpointer, CheckpointWriteError
        try:
            Checkpointer(torch.nn.Linear(400, 400), sys.argv[0]).save("model_big")
        except CheckpointWriteError as e:
            print("MESSAGE", e)
    """, str(tmp_path), cwd=str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    big = tmp_path / "model_big.pth"
    assert f"cannot write checkpoint '{big}'" in proc.stdout
    assert "[Errno 27] File too large" in proc.stdout and "MiB free" in proc.stdout
    assert "previous checkpoint and 'last_checkpoint' are unchanged" in proc.stdout
    assert not big.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last_checkpoint", "model_small.pth"]  # no temp
    assert (tmp_path / "last_checkpoint").read_text() == "model_small.pth"
    assert (tmp_path / "model_small.pth").read_bytes() == before


@pytest.mark.parametrize("debug", [False, True], ids=["message", "debug"])
def test_kiln_train_reports_a_failed_checkpoint_in_one_message_and_logs_the_traceback(tmp_path, debug):
    work = tmp_path / "w"
    args = ["train", *(["--debug"] if debug else []), CFG, "--work-dir", str(work), "--no-validate",
            "--cfg-options",
            "data.train.num_images=2", "data.train.image_size=64", "data.samples_per_gpu=2",
            "data.workers_per_gpu=0", "total_epochs=1", "log_config.interval=1"]
    env_data = str(tmp_path / "data")
    # Data (a few 64 px images), config dump and logs stay far below 1 MB; the model checkpoint does not.
    proc = _run_limited(1_000_000, """
        import os, sys
        os.environ["KILN_DATA"] = sys.argv.pop(0)
        from kiln.cli import main
        raise SystemExit(main(sys.argv))
    """, env_data, *args, cwd=str(tmp_path))
    assert proc.returncode == 1, proc.stderr[-2000:]
    if debug:  # the original exception with its traceback, raised through
        assert "Traceback" in proc.stderr and "CheckpointWriteError: cannot write checkpoint" in proc.stderr
        return
    assert f"cannot write checkpoint '{work}" in proc.stderr and "File too large" in proc.stderr
    assert "Traceback" not in proc.stderr
    log = next(work.rglob("*.log"), None) or next(work.rglob("log.txt"))
    assert "Traceback" in log.read_text() and "CheckpointWriteError" in log.read_text()
    assert not [p for p in work.rglob("*.tmp")]
