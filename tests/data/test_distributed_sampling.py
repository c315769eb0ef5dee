"""Samplers and loaders under a real 2-process gloo group."""

import json
import multiprocessing as mp
import os

import torch.distributed as dist

from kiln.data import InferenceSampler, TrainingSampler, build_test_loader, build_train_loader
from kiln.data.samplers import shared_random_seed

# Imported here, in the parent, so the forked ranks start without re-importing torch.


def _worker(rank, world_size, init_file, out_dir):
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size)
    try:
        dicts = [dict(i=i) for i in range(11)]
        train = build_train_loader(dicts, total_batch_size=4, seed=0, drop_last=False)
        result = dict(
            seed=shared_random_seed(),
            default_rank_seed=TrainingSampler(11).seed,
            train=[[s["i"] for s in b] for b in train],
            infer=list(InferenceSampler(11)),
            test=[[s["i"] for s in b] for b in build_test_loader(dicts, batch_size=2)],
        )
        with open(os.path.join(out_dir, f"rank{rank}.json"), "w") as f:
            json.dump(result, f)
    finally:
        dist.destroy_process_group()


def test_two_ranks_share_seeds_and_split_data(tmp_path):
    ctx = mp.get_context("fork")
    procs = [
        ctx.Process(target=_worker, args=(r, 2, str(tmp_path / "init"), str(tmp_path))) for r in range(2)
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
    assert [p.exitcode for p in procs] == [0, 0]
    r0, r1 = (json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2))
    assert r0["seed"] == r1["seed"] and r0["default_rank_seed"] == r1["default_rank_seed"]
    # training: total batch 4 -> 2 per rank; each epoch's indices split between the ranks
    assert all(len(b) == 2 for b in r0["train"][:-1])
    seen = sorted(i for r in (r0, r1) for b in r["train"] for i in b)
    assert set(seen) == set(range(11)) and len(seen) == 12  # padded to an even split
    # inference: every sample exactly once across ranks
    assert sorted(r0["infer"] + r1["infer"]) == list(range(11))
    assert sorted(i for r in (r0, r1) for b in r["test"] for i in b) == list(range(11))
