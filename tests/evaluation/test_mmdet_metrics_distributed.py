"""CocoMetric and VOCMetric in a 2-process gloo group: each rank's shard is gathered, every rank
returns the single-process metrics."""

from __future__ import annotations

import json
import os

import torch.distributed as dist
import torch.multiprocessing as mp
from evaluation_data import make_gt, make_predictions
from mmdet_metrics_voc_data import HAND, HAND_OUT, voc_dataset


def _shard_results(ev, preds, ids, form):
    ev.reset()
    for i in ids:
        sample = {"image_id": i} if form == "plain" else {"img_metas": {"image_id": i}}
        ev.process([sample], [preds[i]])
    return ev.evaluate()


def _worker(rank: int, world_size: int, init_file: str, gt_file: str, voc_root: str, out_dir: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size)
    try:
        from kiln.evaluation import CocoMetric, VOCMetric

        preds = make_predictions(make_gt())
        coco_ids = sorted(preds)[rank::world_size]
        voc_ids = sorted(HAND_OUT)[rank::world_size]
        results = {
            "coco": _shard_results(CocoMetric(ann_file=gt_file, classwise=True), preds, coco_ids, "plain"),
            "voc": _shard_results(VOCMetric(voc_dataset(voc_root, HAND, write=False), eval_mode="area"),
                                  HAND_OUT, voc_ids, "mm"),
        }
        with open(os.path.join(out_dir, f"rank{rank}.json"), "w") as f:
            json.dump(results, f)
    finally:
        dist.destroy_process_group()


def test_two_ranks_gather_to_the_single_process_metrics(gt_file, tmp_path):
    from kiln.evaluation import CocoMetric, VOCMetric

    out_dir = tmp_path / "out"
    out_dir.mkdir()
    voc_root = str(tmp_path / "voc")
    voc_dataset(voc_root, HAND)  # written once before the ranks read it
    mp.spawn(_worker, args=(2, str(tmp_path / "init"), gt_file, voc_root, str(out_dir)), nprocs=2, join=True)
    ranks = [json.loads((out_dir / f"rank{r}.json").read_text()) for r in range(2)]

    preds = make_predictions(make_gt())
    coco = _shard_results(CocoMetric(ann_file=gt_file, classwise=True), preds, sorted(preds), "plain")
    voc = _shard_results(VOCMetric(voc_dataset(voc_root, HAND), eval_mode="area"), HAND_OUT, sorted(HAND_OUT),
                         "mm")
    # a single shard gives other numbers, so equality below means the shards were gathered
    half = _shard_results(CocoMetric(ann_file=gt_file), preds, sorted(preds)[::2], "plain")
    assert half["coco/bbox_mAP"] != coco["coco/bbox_mAP"]
    for r in ranks:
        assert r["coco"] == coco
        assert r["voc"] == voc
