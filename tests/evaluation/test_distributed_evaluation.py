"""COCOEvaluator in a 2-process gloo group: predictions gathered, every rank gets the same metrics."""

from __future__ import annotations

import json
import os

import torch.distributed as dist
import torch.multiprocessing as mp
from evaluation_data import make_gt, make_predictions


def _worker(rank: int, world_size: int, init_file: str, gt_file: str, out_dir: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size)
    try:
        from kiln.evaluation import COCOEvaluator, inference_on_dataset

        preds = make_predictions(make_gt())
        ids = sorted(preds)[rank::world_size]  # each rank sees its own shard, like InferenceSampler

        def model(batch):
            return [preds[s["image_id"]] for s in batch]

        loader = [[{"image_id": i}] for i in ids]
        ev = COCOEvaluator(gt_file, output_dir=out_dir if rank == 0 else None)
        results = inference_on_dataset(model, loader, ev, progress=False)
        with open(os.path.join(out_dir, f"rank{rank}.json"), "w") as f:
            json.dump({"results": results, "processed": len(ids)}, f)
    finally:
        dist.destroy_process_group()


def test_two_ranks_gather_to_the_single_process_metrics(gt_file, tmp_path):
    from kiln.evaluation import COCOEvaluator

    out_dir = str(tmp_path / "out")
    os.makedirs(out_dir)
    mp.spawn(_worker, args=(2, str(tmp_path / "init"), gt_file, out_dir), nprocs=2, join=True)
    ranks = [json.loads((tmp_path / "out" / f"rank{r}.json").read_text()) for r in range(2)]
    assert [r["processed"] for r in ranks] == [3, 3]  # the work really was split

    preds = make_predictions(make_gt())
    single = COCOEvaluator(gt_file)
    single.process([{"image_id": i} for i in sorted(preds)], [preds[i] for i in sorted(preds)])
    expected = single.evaluate()
    for r in ranks:
        assert r["results"].keys() == expected.keys()
        for k, v in expected.items():
            assert abs(r["results"][k] - v) < 1e-9 or (v != v and r["results"][k] != r["results"][k]), k
    written = json.loads((tmp_path / "out" / "coco_instances_results.json").read_text())
    assert {d["image_id"] for d in written} == set(preds)
