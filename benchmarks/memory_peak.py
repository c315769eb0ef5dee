"""Peak resident memory of a full ``kiln train`` run vs a plain-PyTorch loop on the same model and data.

Both sides train the demo RetinaNet (``kiln::shapes/retinanet_r18_fpn_shapes.py``: ResNet-18 at half
width + FPN on kiln's generated 128 px shapes) for the same number of iterations, batch size and loader
workers, with the same optimizer step (SGD, momentum 0.9, gradient clipping at 35 as the config says):

* ``kiln``: the command line, ``python -m kiln train CONFIG --no-validate --cfg-options ...``, with
  everything a user gets by default: console, ``metrics.jsonl`` and TensorBoard writers, the timer,
  the LR schedule, periodic checkpoints (every ``--iters // 2`` iterations).
* ``plain``: the model built by kiln's builder (``build_model_from_cfg``), the training dataset and
  loader built from the same config by kiln's ``build_dataset``/``build_dataloader`` (the same
  pipeline and collation), then ``loss = sum(losses); zero_grad; backward; clip; step`` -- what
  MMDetection 3.x's runner adds little to.

Each side runs in its own fresh interpreter; its peak is that child's ``ru_maxrss``
(``resource.getrusage(RUSAGE_CHILDREN)`` after it exits: the largest resident set the process had,
imports, model, data and training included). Because torch's own interpreter shutdown adds ~150 MB
to whatever is resident at exit, the child's ``VmHWM`` just before shutdown (an ``atexit`` handler)
is printed too: the peak of the run itself. The sides alternate for ``--rounds`` rounds and the
lowest peak of each is reported, with the ratio kiln / plain.

The generated data set goes to ``$KILN_DATA`` (default ``~/.cache/kiln/data``; made on first use,
outside the measured runs). ``--stages`` also prints each side's resident memory at stages (after
imports, model, data, first iteration, last iteration) from ``/proc/self/status``.

Usage::

    KILN_DATA=/tmp/kiln_data .venv/bin/python benchmarks/memory_peak.py --iters 100 --batch 2 --rounds 2

Run it from the root of the tree whose ``kiln`` you measure: the children start with ``python -c``,
which puts the working directory ahead of ``PYTHONPATH`` on ``sys.path``.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile

CONFIG = "kiln::shapes/retinanet_r18_fpn_shapes.py"
LR = 0.01


def _overrides(batch: int, iters: int, size: int = 128, log_interval: int | None = None) -> list[str]:
    """The config overrides both sides apply (so they train the same thing)."""
    logging_ = [] if log_interval is None else [f"log_config.interval={log_interval}"]
    sized = [] if size == 128 else [  # the demo's own size needs no override
        f"data.train.image_size={size}",
        f"data.train.pipeline.2.img_scale=({size},{size})",
        f"data.train.num_images={max(batch * iters, 100)}",  # each image seen once
    ]
    return sized + logging_ + [
        f"data.samples_per_gpu={batch}",
        "data.workers_per_gpu=0",
        "+runner.type=IterBasedRunner",
        f"+runner.max_iters={iters}",
        f"checkpoint_config.interval={max(1, iters // 2)}",
        "optimizer.type=SGD",
        f"optimizer.lr={LR}",
        "+optimizer.momentum=0.9",
        "optimizer.weight_decay=0.0001",
    ]


def _rss_mb(field: str = "VmRSS") -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _stage(enabled: bool, name: str) -> None:
    if enabled:
        print(f"  [{os.getpid()}] {name:<22} VmRSS {_rss_mb():7.1f} MB  VmHWM {_rss_mb('VmHWM'):7.1f} MB",
              file=sys.stderr, flush=True)


def run_plain(batch: int, iters: int, size: int, stages: bool) -> None:
    """The plain-PyTorch loop (runs in the child process)."""
    import torch

    from kiln.cli.common import load_config
    from kiln.config.dialects import to_canonical
    from kiln.data import build_dataloader, build_dataset
    from kiln.engine.runner_builder import build_model_from_cfg

    _stage(stages, "imports")
    torch.manual_seed(0)
    cfg = load_config(CONFIG, _overrides(batch, iters, size))
    model = build_model_from_cfg(to_canonical(cfg)["model"])  # the model `kiln train` builds
    model.train()
    _stage(stages, "model")
    dataset = build_dataset(cfg.data.train.to_dict())
    loader = build_dataloader(dataset, samples_per_gpu=batch, workers_per_gpu=0, seed=0,
                              runner_type="IterBasedRunner")
    _stage(stages, "data")
    opt = torch.optim.SGD(model.parameters(), lr=LR, momentum=0.9, weight_decay=0.0001)
    it = iter(loader)
    for i in range(iters):
        losses = model(next(it))
        loss = sum(v for k, v in losses.items() if "loss" in k)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 35)
        opt.step()
        if i == 0:
            _stage(stages, "first iteration")
    _stage(stages, f"{iters} iterations")


# Runs a module or script as ``python -m``/``python FILE`` would, after registering an exit handler
# that reports the process's VmHWM before the interpreter shuts down: torch's own shutdown touches
# ~150 MB more (``python -c 'import torch'`` peaks at ~750 MB though torch's import leaves ~600 MB
# resident), so ru_maxrss of any PyTorch program is its RSS at exit plus that, and can hide the
# training peak.
_WRAP = (
    "import atexit, runpy, sys\n"
    "def _hwm():\n"
    "    with open('/proc/self/status') as f:\n"
    "        kb = [line.split()[1] for line in f if line.startswith('VmHWM:')][0]\n"
    "    sys.stderr.write(f'\\nVMHWM_BEFORE_EXIT {kb}\\n')\n"
    "atexit.register(_hwm)\n"
    "target, sys.argv = sys.argv[1], sys.argv[1:]\n"
    "if target.endswith('.py'):\n"
    "    runpy.run_path(target, run_name='__main__')\n"
    "else:\n"
    "    sys.argv[0] = target\n"
    "    runpy.run_module(target, run_name='__main__', alter_sys=True)\n"
)


def _measure(cmd: list[str], env: dict) -> tuple[float, float, str]:
    """Run ``cmd`` (``[module or script, args...]``) in a fresh child.

    Returns (its peak RSS in MB from ru_maxrss, its VmHWM in MB just before interpreter shutdown,
    its stderr tail).
    """
    cmd = [sys.executable, "-c", _WRAP, *cmd]
    # RUSAGE_CHILDREN is the max over all waited-for children so far: measure in a fresh
    # intermediate interpreter whose only child is ``cmd``.
    probe = (
        "import resource, subprocess, sys\n"
        "p = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)\n"
        "sys.stderr.write(p.stderr[-4000:])\n"
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
        "sys.exit(p.returncode)\n"
    )
    p = subprocess.run([sys.executable, "-c", probe, *cmd], env=env, capture_output=True, text=True)
    if p.returncode != 0:
        raise SystemExit(f"measured run failed ({' '.join(cmd)}):\n{p.stderr}")
    hwm = [line.split()[1] for line in p.stderr.splitlines() if line.startswith("VMHWM_BEFORE_EXIT")]
    return int(p.stdout.split()[-1]) / 1024, int(hwm[-1]) / 1024, p.stderr


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--iters", type=int, default=100)
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--size", type=int, default=128, help="image side (128: the demo's shapes)")
    ap.add_argument("--log-interval", type=int, default=None,
                    help="kiln's logging interval (default: the config's, 20); the step outputs are "
                         "buffered between two logs")
    ap.add_argument("--stages", action="store_true", help="print resident memory at stages of each run")
    ap.add_argument("--side", choices=["plain"], help=argparse.SUPPRESS)  # the child's entry point
    args = ap.parse_args()
    if args.side == "plain":
        run_plain(args.batch, args.iters, args.size, args.stages)
        return

    env = dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"))
    # Generate the data set outside the measured runs.
    subprocess.run([sys.executable, "-c", "from kiln.cli.common import load_config\n"
                    "from kiln.data import build_dataset\n"
                    f"cfg = load_config({CONFIG!r}, {_overrides(args.batch, args.iters, args.size)!r})\n"
                    "build_dataset(cfg.data.train.to_dict())"], env=env, check=True)
    peaks: dict[str, list[float]] = {"kiln": [], "plain": []}
    hwms: dict[str, list[float]] = {"kiln": [], "plain": []}
    with tempfile.TemporaryDirectory(prefix="kiln_memory_peak_") as tmp:
        for r in range(args.rounds):
            plain_cmd = [os.path.abspath(__file__), "--side", "plain",
                         "--iters", str(args.iters), "--batch", str(args.batch),
                         "--size", str(args.size)]
            if args.stages:
                plain_cmd.append("--stages")
            kiln_cmd = ["kiln", "train", CONFIG, "--work-dir",
                        os.path.join(tmp, f"work_{r}"), "--no-validate",
                        "--cfg-options", *_overrides(args.batch, args.iters, args.size, args.log_interval)]
            for side, cmd in (("plain", plain_cmd), ("kiln", kiln_cmd)):
                peak, hwm, err = _measure(cmd, env)
                peaks[side].append(peak)
                hwms[side].append(hwm)
                print(f"round {r + 1}: {side:<5} peak RSS {peak:7.1f} MB (before shutdown {hwm:7.1f} MB)",
                      flush=True)
                if args.stages:
                    print("\n".join(line for line in err.splitlines() if "VmRSS" in line), flush=True)
    kiln, plain = min(peaks["kiln"]), min(peaks["plain"])
    kiln_h, plain_h = min(hwms["kiln"]), min(hwms["plain"])
    print(f"\nRetinaNet R18-FPN (demo config), {args.size} px, batch {args.batch}, 0 workers, "
          f"{args.iters} iterations, SGD, {args.rounds} round(s), lowest peak of each")
    print("            peak RSS (ru_maxrss)   peak before interpreter shutdown (VmHWM)")
    print(f"kiln train  {kiln:8.1f} MB            {kiln_h:8.1f} MB")
    print(f"plain loop  {plain:8.1f} MB            {plain_h:8.1f} MB")
    print(f"ratio       {kiln / plain:8.3f}x              {kiln_h / plain_h:8.3f}x")


if __name__ == "__main__":
    main()
