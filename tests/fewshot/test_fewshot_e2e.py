"""DeFRCN's workflow end to end through the command line, on generated shapes data (base: circle,
square; novel: triangle): base training with GDL, surgery, 1- and 2-shot fine-tunes over two seeds with
GDL and PCB on, the PCB test of each, and the nAP/bAP summary; killed after its first fine-tune, the same
command finishes the sweep without redoing what was finished."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import yaml
from fewshot_fixtures import defrcn_yaml


def _env():
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env["PYTHONPATH"] = os.pathsep.join([repo, env.get("PYTHONPATH", "")])
    return env


def test_sweep_runs_every_step_and_resumes_after_a_kill(tmp_path, shapes_fewshot, pcb_weights):
    (tmp_path / "base.yaml").write_text(defrcn_yaml(2, finetune=False, iters=4))
    (tmp_path / "gfsod.yaml").write_text(defrcn_yaml(3, finetune=True, iters=2))
    spec = dict(dataset=dict(name="fsshapes", **shapes_fewshot), setting="gfsod", shots=[1, 2], seeds=[0, 1],
                base_config="base.yaml", finetune_config="gfsod.yaml", pcb_model=pcb_weights,
                work_dir="work", evaluate_base=False)
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(spec))
    cmd = [sys.executable, "-m", "kiln", "fewshot", str(tmp_path / "spec.yaml")]

    # first attempt: killed right after its first fine-tune has finished
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=_env(),
                            cwd=tmp_path)
    first = []
    for line in proc.stdout:
        first.append(line)
        if line.startswith("[1/4]"):
            proc.send_signal(signal.SIGKILL)
            break
    proc.wait(timeout=60)
    proc.stdout.close()
    assert any(line.startswith("[1/4] gfsod 1shot_seed0: done") for line in first), "".join(first)[-3000:]
    work = tmp_path / "work"
    assert (work / "base" / "model_final.pth").is_file()
    assert (work / "base" / "model_reset_surgery.pth").is_file()
    run1 = work / "gfsod" / "1shot_seed0" / "inference" / "res_final.json"
    stamp = run1.stat().st_mtime_ns
    assert not (work / "gfsod" / "1shot_seed0" / "model_final.pth").exists()  # deleted after its test

    # second attempt: finishes, skipping what was done
    out = subprocess.run(cmd, capture_output=True, text=True, env=_env(), cwd=tmp_path, timeout=600)
    assert out.returncode == 0, (out.stdout + out.stderr)[-3000:]
    lines = out.stdout.splitlines()
    assert any(line.startswith("[base]") and "skipped" in line for line in lines)
    assert any(line.startswith("[surgery]") and "skipped" in line for line in lines)
    assert any(line.startswith("[1/4] gfsod 1shot_seed0: finished earlier, skipped") for line in lines)
    progress = [line for line in lines if line.startswith("[") and "/4]" in line]
    assert [p.split(":")[0] for p in progress] == ["[1/4] gfsod 1shot_seed0", "[2/4] gfsod 1shot_seed1",
                                                   "[3/4] gfsod 2shot_seed0", "[4/4] gfsod 2shot_seed1"]
    assert run1.stat().st_mtime_ns == stamp
    for tag in ("1shot_seed0", "1shot_seed1", "2shot_seed0", "2shot_seed1"):
        res = json.loads((work / "gfsod" / tag / "inference" / "res_final.json").read_text())
        assert {"bbox/nAP", "bbox/nAP50", "bbox/nAP75", "bbox/bAP", "bbox/bAP50", "bbox/AP"} <= set(res)
        # the fine-tune was a DeFRCN detector (GDL on) and its test ran PCB with all three prototypes
        assert "type='DeFRCN'" in (work / "gfsod" / tag / "config.py").read_text()
        assert "PCB: prototypes for classes [0, 1, 2]" in (work / "gfsod" / tag / "log.txt").read_text()
    summary = (work / "gfsod" / "results.txt").read_text()
    assert "--> 1-shot" in summary and "--> 2-shot" in summary
    assert "| run | nAP | nAP50 | nAP75 | bAP | bAP50 | bAP75 | AP | AP50 | AP75 |" in summary
    assert "| μ |" in summary and "| c |" in summary
    assert summary.strip() in out.stdout
