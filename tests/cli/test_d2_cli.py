"""`kiln train` as Detectron2/DeFRCN users call it: trailing KEY VALUE overrides, OUTPUT_DIR layout,
--eval-only/--eval-iter, --eval-all with --start-iter/--end-iter, --eval-during-train, --resume."""

from __future__ import annotations

import json
import os

import pytest

from kiln.cli import main
from kiln.cli.main import build_parser, parse_args

BASE = """\
MODEL:
  META_ARCHITECTURE: "RetinaNet"
  BACKBONE:
    NAME: "build_retinanet_resnet_fpn_backbone"
  RESNETS:
    DEPTH: 18
    RES2_OUT_CHANNELS: 64
    OUT_FEATURES: ["res3", "res4", "res5"]
  ANCHOR_GENERATOR:
    SIZES: !!python/object/apply:eval ["[[x, x * 2**(1/3), x * 2**(2/3)] for x in [32, 64, 128, 256, 512]]"]
  FPN:
    IN_FEATURES: ["res3", "res4", "res5"]
    OUT_CHANNELS: 32
  RETINANET:
    NUM_CLASSES: 3
DATASETS:
  TRAIN: ("d2cli_train",)
  TEST: ("d2cli_val",)
SOLVER:
  IMS_PER_BATCH: 2
  BASE_LR: 0.01
  STEPS: ()
  WARMUP_ITERS: 0
  MAX_ITER: 4
  CHECKPOINT_PERIOD: 2
INPUT:
  MIN_SIZE_TRAIN: (64,)
  MAX_SIZE_TRAIN: 64
  MIN_SIZE_TEST: 64
  MAX_SIZE_TEST: 64
DATALOADER:
  NUM_WORKERS: 0
TEST:
  EVAL_PERIOD: 0
SEED: 3
"""

# Detectron2's checkpoint layout as the translator is agreed to emit it (interfaces.md, "Outputs").
D2_LAYOUT = ["--cfg-options", "default_hooks.checkpoint.filename_tmpl=model_{:07d}.pth",
             "default_hooks.checkpoint.final_filename=model_final.pth"]


@pytest.fixture(scope="module")
def d2_yaml(tmp_path_factory):
    """A small RetinaNet yaml over two generated COCO-format splits registered as d2cli_train/d2cli_val."""
    from kiln.data import DatasetCatalog
    from kiln.data.datasets import generate_shapes_dataset, register_coco_instances

    root = tmp_path_factory.mktemp("d2cli")
    for split, n in (("train", 4), ("val", 3)):
        if f"d2cli_{split}" not in DatasetCatalog.list():
            p = generate_shapes_dataset(str(root), num_images=n, image_size=64, split=split)
            register_coco_instances(f"d2cli_{split}", {}, p["ann_file"], p["img_prefix"])
    path = root / "retina.yaml"
    path.write_text(BASE)
    return str(path)


@pytest.fixture(scope="module")
def trained(d2_yaml, tmp_path_factory):
    """One 4-iteration training (checkpoints after iterations 2 and 4) shared by the evaluation tests."""
    out = tmp_path_factory.mktemp("d2cli_run") / "out"
    assert main(["train", "--config-file", d2_yaml, *D2_LAYOUT, "OUTPUT_DIR", str(out)]) == 0
    return out


def _parse(*argv):
    return parse_args(build_parser(), list(argv))


def test_trailing_key_value_pairs_are_detectron2_opts():
    args = _parse("train", "--config-file", "x.yaml", "--num-gpus", "1", "SOLVER.BASE_LR", "0.01",
                  "SOLVER.STEPS", "(1,2)")
    assert args.config_file == "x.yaml"
    # The first trailing word lands in CONFIG (argparse's positional); `kiln train` moves it back.
    assert [args.config, *args.opts] == ["SOLVER.BASE_LR", "0.01", "SOLVER.STEPS", "(1,2)"]
    args = _parse("train", "x.yaml", "--work-dir", "w", "MODEL.WEIGHTS", "m.pth", "--opts", "SEED", "-1")
    assert (args.config, args.work_dir) == ("x.yaml", "w")
    assert args.opts == ["MODEL.WEIGHTS", "m.pth", "SEED", "-1"]


def test_an_unknown_flag_among_trailing_pairs_is_still_an_error(capsys):
    with pytest.raises(SystemExit):
        _parse("train", "x.yaml", "SOLVER.BASE_LR", "0.01", "--wrok-dir", "w")
    assert "unrecognized arguments: --wrok-dir" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # commands without Detectron2 overrides take no trailing words
        _parse("config", "print", "x.yaml", "SOLVER.BASE_LR", "0.01")


@pytest.mark.parametrize("flags, message", [
    (["--eval-only", "--eval-all"], "--eval-only and --eval-all are different evaluation modes"),
    (["--eval-iter", "5"], "--eval-iter N names the checkpoint --eval-only evaluates"),
    (["--eval-only", "--eval-iter", "0"], "--eval-iter must be an iteration count >= 1, got 0"),
    (["--start-iter", "5"], "--start-iter bounds the checkpoints --eval-all evaluates"),
    (["--eval-all", "--start-iter", "9", "--end-iter", "5"], "--start-iter 9 is after --end-iter 5"),
    (["--eval-all", "--num-gpus", "2"], "--eval-all evaluates in this one process"),
    (["--eval-only", "--eval-iter", "3", "--load-from", "x.pth"], "cannot be combined with --load-from"),
])
def test_bad_flag_combinations_are_refused(d2_yaml, capsys, flags, message):
    assert main(["train", "--config-file", d2_yaml, *flags]) == 2
    assert message in capsys.readouterr().err


def test_training_writes_detectron2s_output_dir(trained):
    names = sorted(os.listdir(trained))
    assert {"model_0000001.pth", "model_0000003.pth", "model_final.pth", "last_checkpoint",
            "config.yaml"} <= set(names)
    assert (trained / "last_checkpoint").read_text().strip() == "model_final.pth"
    from kiln.config import get_cfg

    saved = get_cfg()
    saved.set_new_allowed(True)  # the few-shot project keys kiln adds (MODEL.BACKBONE.FREEZE, ...)
    saved.merge_from_file(str(trained / "config.yaml"))
    assert saved.OUTPUT_DIR == str(trained)  # the trailing override is in the merged node
    assert saved.SOLVER.MAX_ITER == 4 and saved.MODEL.RETINANET.NUM_CLASSES == 3


def test_eval_only_writes_inference_results(d2_yaml, trained, capsys):
    assert main(["train", "--config-file", d2_yaml, *D2_LAYOUT, "--eval-only",
                 "OUTPUT_DIR", str(trained)]) == 0
    assert "evaluation of " + str(trained / "model_final.pth") in capsys.readouterr().out
    dets = json.loads((trained / "inference" / "coco_instances_results.json").read_text())
    assert isinstance(dets, list)
    assert all({"image_id", "bbox", "score", "category_id"} <= set(d) for d in dets)
    assert "bbox/AP" in json.loads((trained / "inference" / "res_final.json").read_text())


def test_eval_iter_picks_the_checkpoint_saved_after_n_iterations(d2_yaml, trained, capsys):
    assert main(["train", "--config-file", d2_yaml, *D2_LAYOUT, "--eval-only", "--eval-iter", "2",
                 "OUTPUT_DIR", str(trained)]) == 0
    assert "evaluation of " + str(trained / "model_0000001.pth") in capsys.readouterr().out
    assert main(["train", "--config-file", d2_yaml, *D2_LAYOUT, "--eval-only", "--eval-iter", "3",
                 "OUTPUT_DIR", str(trained)]) == 2
    err = capsys.readouterr().err
    assert "model_0000002.pth does not exist" in err and "model_0000003.pth" in err


def test_eval_all_evaluates_every_checkpoint_in_order_within_the_bounds(d2_yaml, trained):
    base = ["train", "--config-file", d2_yaml, *D2_LAYOUT, "OUTPUT_DIR", str(trained), "--eval-all"]
    assert main(base) == 0
    res = json.loads((trained / "inference" / "all_res.json").read_text())
    evaluated = [k for k in res if k.endswith(".pth")]
    assert [os.path.basename(k) for k in evaluated] == ["model_0000001.pth", "model_0000003.pth",
                                                        "model_final.pth"]
    assert res["best_file"] in evaluated and res["best_res"] == res[res["best_file"]]
    assert main([*base, "--start-iter", "3", "--end-iter", "4"]) == 0
    res = json.loads((trained / "inference" / "all_res.json").read_text())
    assert [os.path.basename(k) for k in res if k.endswith(".pth")] == ["model_0000003.pth"]


def test_eval_all_without_checkpoints_names_the_directory(d2_yaml, tmp_path, capsys):
    assert main(["train", "--config-file", d2_yaml, "--eval-all", "OUTPUT_DIR", str(tmp_path)]) == 2
    assert f"no checkpoint in {tmp_path}" in capsys.readouterr().err


def test_eval_during_train_stops_after_the_final_checkpoint(d2_yaml, trained):
    assert main(["train", "--config-file", d2_yaml, *D2_LAYOUT, "--eval-during-train",
                 "--eval-poll-seconds", "0.1", "OUTPUT_DIR", str(trained)]) == 0
    res = json.loads((trained / "inference" / "all_res.json").read_text())
    assert [os.path.basename(k) for k in res if k.endswith(".pth")] == ["model_final.pth"]


def test_resume_continues_from_the_checkpoint_last_checkpoint_names(d2_yaml, trained, tmp_path):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(trained, run)
    assert main(["train", "--config-file", d2_yaml, *D2_LAYOUT, "--resume", "OUTPUT_DIR", str(run),
                 "SOLVER.MAX_ITER", "6"]) == 0
    log = (run / "log.txt").read_text()
    assert f"Resumed from {run / 'model_final.pth'} at epoch" in log and "iteration 4" in log
    assert {"model_0000005.pth", "model_final.pth"} <= set(os.listdir(run))
    import torch

    final = torch.load(run / "model_final.pth", map_location="cpu", weights_only=True)
    assert final["meta"]["iter"] == 6


def test_trailing_pairs_after_cfg_options_are_not_taken_as_cfg_options():
    args = _parse("train", "x.yaml", "--cfg-options", "a.b=1", "SOLVER.MAX_ITER", "6")
    assert args.cfg_options == ["a.b=1"] and args.opts == ["SOLVER.MAX_ITER", "6"]


def test_eval_only_with_test_aug_enabled_adds_tta_metrics(d2_yaml, trained):
    assert main(["train", "--config-file", d2_yaml, *D2_LAYOUT, "--eval-only", "OUTPUT_DIR", str(trained),
                 "TEST.AUG.ENABLED", "True", "TEST.AUG.MIN_SIZES", "(48, 64)",
                 "TEST.AUG.MAX_SIZE", "100"]) == 0
    res = json.loads((trained / "inference" / "res_final.json").read_text())
    assert "bbox/AP" in res and "bbox/AP_TTA" in res
    assert (trained / "inference_TTA" / "coco_instances_results.json").is_file()


def test_eval_during_train_follows_last_checkpoint_as_training_moves_it(d2_yaml, trained, tmp_path):
    """The training is simulated by the clock: each poll, last_checkpoint moves on to the next file."""
    import shutil

    from kiln.cli.common import load_canonical_config
    from kiln.cli.d2_eval import CheckpointEvaluator, evaluate_during_train

    run = tmp_path / "run"
    shutil.copytree(trained, run)
    pointer = run / "last_checkpoint"
    pointer.write_text("model_0000001.pth")
    schedule = ["model_0000001.pth", "model_0000003.pth", "model_0000003.pth", "model_final.pth"]

    class TrainingClock:
        sleeps = 0

        def sleep(self, seconds):
            TrainingClock.sleeps += 1
            pointer.write_text(schedule[min(TrainingClock.sleeps, len(schedule) - 1)])

    cfg = load_canonical_config(d2_yaml, D2_LAYOUT[1:], ["OUTPUT_DIR", str(run)])
    ranking = evaluate_during_train(CheckpointEvaluator(cfg), cfg, poll_seconds=5, clock=TrainingClock())
    assert [os.path.basename(k) for k in ranking.all] == ["model_0000001.pth", "model_0000003.pth",
                                                          "model_final.pth"]
    assert TrainingClock.sleeps == 3  # stopped at model_final without waiting again


def test_ims_per_batch_is_the_total_over_all_processes(d2_yaml):
    from kiln.cli.common import load_canonical_config

    one = load_canonical_config(d2_yaml, (), ["SOLVER.IMS_PER_BATCH", "8"])
    four = load_canonical_config(d2_yaml, (), ["SOLVER.IMS_PER_BATCH", "8"], num_gpus=4)
    assert (one.train_dataloader.batch_size, four.train_dataloader.batch_size) == (8, 2)


def test_kiln_plot_reads_detectron2s_metrics_json_in_an_output_dir(tmp_path):
    rows = [{"iteration": i, "total_loss": 2.0 - 0.1 * i, "lr": 0.01} for i in range(5)]
    (tmp_path / "metrics.json").write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert main(["plot", str(tmp_path), "--keys", "total_loss"]) == 0
    assert (tmp_path / "curve.png").stat().st_size > 0
