"""A process SIGKILLed while writing a checkpoint leaves the previous checkpoint and pointer intact."""

import os
import signal
import subprocess
import sys
import time

import torch
from torch import nn

from kiln.engine.checkpoint import Checkpointer

# The child saves a small checkpoint, then keeps saving big ones (~64 MB each) under new names, so that
# whenever the kill lands, some file is half-written.
_CHILD = r"""
import sys, torch
from torch import nn
from kiln.engine.checkpoint import Checkpointer
save_dir = sys.argv[1]
torch.manual_seed(0)
model = nn.Linear(4, 4)
ckpt = Checkpointer(model, save_dir, save_to_disk=True)
ckpt.save("model_0000000", iteration=0)
print("first-save-done", flush=True)
big = torch.randn(16 * 1024 * 1024)
for i in range(1, 1000):
    with torch.no_grad():
        model.weight.fill_(float(i))
    ckpt.save(f"model_{i:07d}", iteration=i, big=big)
"""


def _temp_files(d):
    return [n for n in os.listdir(d) if n.endswith(".tmp")]


def test_sigkill_during_save_keeps_previous_checkpoint_and_pointer(tmp_path):
    save_dir = tmp_path / "ckpt"
    proc = subprocess.Popen([sys.executable, "-c", _CHILD, str(save_dir)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "first-save-done"
        deadline = time.monotonic() + 60
        # Wait until one big save has completed and the next one is under way (a temp file with data).
        while time.monotonic() < deadline:
            if (save_dir / "model_0000001.pth").exists():
                tmps = [save_dir / n for n in _temp_files(save_dir) if ".pth." in n]
                if any(p.exists() and p.stat().st_size > 0 for p in tmps):
                    break
            time.sleep(0.001)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    assert proc.returncode == -signal.SIGKILL

    tmps = _temp_files(save_dir)
    assert any(".pth." in t for t in tmps), "the kill should have landed while a checkpoint was written"
    for tmp in tmps:  # '.model_0000003.pth.abc123.tmp' -> model_0000003.pth never appears half-written
        if ".pth." in tmp:
            assert not (save_dir / (tmp[1:].split(".pth.")[0] + ".pth")).exists()

    model = nn.Linear(4, 4)
    ckpt = Checkpointer(model, str(save_dir))
    assert ckpt.has_checkpoint()
    last = os.path.basename(ckpt.get_checkpoint_file())
    i = ckpt.resume_or_load(None, resume=True)["iteration"]
    assert last == f"model_{i:07d}.pth" and i >= 1
    assert torch.equal(model.weight, torch.full((4, 4), float(i)))
    # Every complete file loads with weights_only; the pointer names the newest complete one.
    complete = sorted(n for n in os.listdir(save_dir) if n.endswith(".pth"))
    for name in complete:
        torch.load(save_dir / name, weights_only=True)
    assert last == complete[-1]
