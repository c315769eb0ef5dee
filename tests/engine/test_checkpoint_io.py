"""Checkpointer: atomic files, weights_only loading, key reconciliation, resume vs load, RNG states."""

import logging
import os
import pickle
import random

import numpy as np
import pytest
import torch
from torch import nn

from kiln.engine.checkpoint import (
    Checkpointer,
    PeriodicCheckpointer,
    atomic_torch_save,
    get_rng_states,
    set_rng_states,
)


def _model(hidden=4):
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, hidden), nn.BatchNorm1d(hidden), nn.Linear(hidden, 2))


def _trained(model):
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    for _ in range(2):
        opt.zero_grad()
        model(torch.randn(8, 3)).pow(2).mean().backward()
        opt.step()
    return opt


class _Counter:
    """A minimal checkpointable (like a hook with state)."""

    def __init__(self, n=0):
        self.n = n

    def state_dict(self):
        return {"n": self.n}

    def load_state_dict(self, state):
        self.n = state["n"]


def test_save_writes_file_and_pointer_and_load_restores_everything(tmp_path):
    model = _model()
    opt = _trained(model)
    ckpt = Checkpointer(model, str(tmp_path), optimizer=opt, counter=_Counter(7))
    path = ckpt.save("model_0000009", iteration=9)
    assert path == str(tmp_path / "model_0000009.pth")
    assert (tmp_path / "last_checkpoint").read_text() == "model_0000009.pth"
    assert ckpt.has_checkpoint() and ckpt.get_checkpoint_file() == path

    model2 = _model(hidden=4)
    nn.init.zeros_(model2[0].weight)
    opt2 = torch.optim.SGD(model2.parameters(), lr=0.1, momentum=0.9)
    counter2 = _Counter()
    extra = Checkpointer(model2, str(tmp_path), optimizer=opt2, counter=counter2).load(path)
    assert extra == {"iteration": 9}
    for a, b in zip(model.state_dict().values(), model2.state_dict().values()):
        assert torch.equal(a, b)
    assert torch.equal(opt.state_dict()["state"][0]["momentum_buffer"],
                       opt2.state_dict()["state"][0]["momentum_buffer"])
    assert counter2.n == 7


def test_saved_file_loads_with_plain_torch_weights_only(tmp_path):
    ckpt = Checkpointer(_model(), str(tmp_path))
    path = ckpt.save("m", meta={"epoch": 1, "seed": np.int64(3), "shape": np.array([1, 2])},
                     rng=get_rng_states())
    data = torch.load(path, weights_only=True)
    assert data["meta"] == {"epoch": 1, "seed": 3, "shape": [1, 2]}  # numpy became plain python
    assert set(data) == {"model", "meta", "rng"}


def test_subclasses_of_plain_types_are_stored_as_plain_values(tmp_path):
    # torch.__version__ is a str subclass; stored as is, weights_only loading would reject the file.
    path = Checkpointer(_model(), str(tmp_path)).save("m", meta={"torch": torch.__version__})
    data = torch.load(path, weights_only=True)
    assert data["meta"]["torch"] == str(torch.__version__) and type(data["meta"]["torch"]) is str


def test_save_rejects_objects_weights_only_cannot_load_naming_the_key(tmp_path):
    ckpt = Checkpointer(_model(), str(tmp_path))
    with pytest.raises(TypeError, match=r"checkpoint 'm'\.meta\.cfg is a .*_Counter.*state_dict"):
        ckpt.save("m", meta={"cfg": _Counter()})
    assert not (tmp_path / "m.pth").exists()


def test_pickled_objects_need_explicit_opt_in(tmp_path):
    path = str(tmp_path / "trusted.pth")
    torch.save({"model": _model().state_dict(), "obj": _Counter(3)}, path)
    ckpt = Checkpointer(_model(), str(tmp_path))
    with pytest.raises(pickle.UnpicklingError, match=r"trusted.pth.*allow_pickle=True"):
        ckpt.load(path)
    assert ckpt.load(path, allow_pickle=True)["obj"].n == 3
    assert ckpt.load(path, weights_only=False)["obj"].n == 3


def test_rng_states_round_trip_through_a_checkpoint(tmp_path):
    ckpt = Checkpointer(_model(), str(tmp_path))
    random.seed(1)
    np.random.seed(1)
    torch.manual_seed(1)
    np.random.randn()  # leave numpy with a cached gaussian, the awkward part of its state
    path = ckpt.save("m", rng=get_rng_states())
    expected = (random.random(), np.random.randn(), torch.rand(3))
    random.seed(99)
    np.random.seed(99)
    torch.manual_seed(99)
    set_rng_states(ckpt.load(path)["rng"])
    got = (random.random(), np.random.randn(), torch.rand(3))
    assert got[:2] == expected[:2] and torch.equal(got[2], expected[2])


def test_rng_states_saved_as_word_lists_by_older_checkpoints_still_restore():
    random.seed(3)
    np.random.seed(3)
    states = get_rng_states()
    expected = (random.random(), np.random.rand())
    old = dict(states)
    old["python"] = dict(states["python"], state=states["python"]["state"].tolist())
    old["numpy"] = dict(states["numpy"], key=states["numpy"]["key"].tolist())
    random.seed(4)
    np.random.seed(4)
    set_rng_states(old)
    assert (random.random(), np.random.rand()) == expected


def test_set_rng_states_rejects_incomplete_state():
    with pytest.raises(KeyError, match="expected what get_rng_states"):
        set_rng_states({"torch": torch.get_rng_state()})


def test_ddp_module_prefix_is_stripped(tmp_path):
    src = _model()
    path = str(tmp_path / "ddp.pth")
    torch.save({"model": {f"module.{k}": v for k, v in src.state_dict().items()}}, path)
    dst = _model()
    nn.init.zeros_(dst[2].weight)
    Checkpointer(dst, str(tmp_path)).load(path)
    assert torch.equal(dst[2].weight, src[2].weight)


def test_mmengine_state_dict_layout_loads(tmp_path):
    src = _model()
    path = str(tmp_path / "mm.pth")
    torch.save({"state_dict": src.state_dict(), "meta": {"epoch": 12}}, path)
    dst = _model()
    nn.init.zeros_(dst[0].weight)
    assert Checkpointer(dst, str(tmp_path)).load(path) == {"meta": {"epoch": 12}}
    assert torch.equal(dst[0].weight, src[0].weight)


def test_shape_mismatch_is_skipped_and_reported_with_missing_and_unexpected(tmp_path, caplog):
    src = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 5))  # head with 5 classes
    path = str(tmp_path / "src.pth")
    torch.save({"model": {**src.state_dict(), "extra.weight": torch.ones(1)}}, path)
    dst = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 2), nn.Linear(2, 2))
    ckpt = Checkpointer(dst, str(tmp_path))
    with caplog.at_level(logging.WARNING, logger="kiln.engine.checkpoint"):
        ckpt.load(path)
    assert torch.equal(dst[0].weight, src[0].weight)  # matching keys still load
    table = caplog.records[-1].getMessage()
    assert "shape mismatch (skipped)  1.weight" in table and "checkpoint (5, 4) vs model (2, 4)" in table
    assert "missing in checkpoint" in table and "2.{bias,weight}" in table
    assert "not in model" in table and "extra.weight" in table
    keys = ckpt.last_incompatible_keys
    assert sorted(keys.missing_keys) == ["2.bias", "2.weight"]  # the skipped 1.* are not "missing"
    assert keys.unexpected_keys == ["extra.weight"]


def test_checkpointable_state_that_does_not_fit_names_the_key(tmp_path):
    model = _model()
    path = Checkpointer(model, str(tmp_path), optimizer=_trained(model)).save("m")
    other = _model()
    small_opt = torch.optim.SGD(list(other.parameters())[:1], lr=0.1)
    with pytest.raises(RuntimeError, match=r"'optimizer' state in .*m.pth' does not fit SGD.*load_from"):
        Checkpointer(other, str(tmp_path), optimizer=small_opt).load(path)


def test_resume_or_load_resumes_everything_or_loads_only_weights(tmp_path):
    model = _model()
    opt = _trained(model)
    Checkpointer(model, str(tmp_path / "run"), optimizer=opt).save("model_final", iteration=99)
    weights = str(tmp_path / "run" / "model_final.pth")

    counter = _Counter(0)
    fresh = _model()
    fresh_opt = torch.optim.SGD(fresh.parameters(), lr=0.1, momentum=0.9)
    c = Checkpointer(fresh, str(tmp_path / "run"), optimizer=fresh_opt)
    assert c.resume_or_load(None, resume=True) == {"iteration": 99}
    assert fresh_opt.state_dict()["state"]  # optimizer state came back

    new_model = _model()
    new_opt = torch.optim.SGD(new_model.parameters(), lr=0.1, momentum=0.9)
    c2 = Checkpointer(new_model, str(tmp_path / "new_run"), optimizer=new_opt, counter=counter)
    extra = c2.resume_or_load(weights, resume=True)  # nothing to resume in new_run: load_from
    assert torch.equal(new_model[0].weight, model[0].weight)
    assert new_opt.state_dict()["state"] == {}  # optimizer untouched by a weights-only load
    assert extra["iteration"] == 99 and "optimizer" in extra  # unloaded entries are handed back
    assert c2.resume_or_load(None, resume=False) == {}


def test_missing_checkpoint_file_error_names_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.pth"):
        Checkpointer(_model(), str(tmp_path)).load(str(tmp_path / "nope.pth"))


def test_empty_dir_has_no_checkpoint(tmp_path):
    c = Checkpointer(_model(), str(tmp_path))
    assert not c.has_checkpoint() and c.get_checkpoint_file() == "" and c.get_all_checkpoint_files() == []


def test_save_to_disk_false_writes_nothing(tmp_path):
    assert Checkpointer(_model(), str(tmp_path), save_to_disk=False).save("m") is None
    assert os.listdir(tmp_path) == []


def test_periodic_checkpointer_keeps_the_newest_and_the_final(tmp_path):
    c = Checkpointer(_model(), str(tmp_path))
    periodic = PeriodicCheckpointer(c, period=2, max_iter=9, max_to_keep=2)
    for it in range(9):
        periodic.step(it)
    names = sorted(os.listdir(tmp_path))
    assert names == ["last_checkpoint", "model_0000005.pth", "model_0000007.pth", "model_final.pth"]
    assert c.get_checkpoint_file().endswith("model_final.pth")
    assert torch.load(tmp_path / "model_final.pth", weights_only=True)["iteration"] == 8


def test_atomic_save_leaves_no_temp_files_and_normal_permissions(tmp_path):
    path = str(tmp_path / "x.pth")
    atomic_torch_save({"a": torch.ones(2)}, path)
    assert os.listdir(tmp_path) == ["x.pth"]
    umask = os.umask(0)
    os.umask(umask)
    assert os.stat(path).st_mode & 0o777 == 0o666 & ~umask


def test_all_checkpoint_files_are_listed_oldest_first(tmp_path):
    c = Checkpointer(_model(), str(tmp_path))
    for i, name in enumerate(["b", "a", "c"]):
        path = c.save(name)
        os.utime(path, (1000 + i, 1000 + i))  # distinct mtimes regardless of filesystem resolution
    assert [os.path.basename(p) for p in c.get_all_checkpoint_files()] == ["b.pth", "a.pth", "c.pth"]


def test_without_save_dir_no_pointer_is_read_from_the_current_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Checkpointer(_model(), ".").save("stray")
    c = Checkpointer(_model())
    assert not c.has_checkpoint() and c.get_all_checkpoint_files() == []
    with pytest.raises(ValueError, match="save_dir is empty"):
        c.save("m")


def test_detectron2_pkl_weights_load_numpy_arrays_without_an_unsafe_switch(tmp_path):
    src = _model()
    path = str(tmp_path / "model_final.pkl")
    with open(path, "wb") as f:
        pickle.dump({"model": {k: v.numpy() for k, v in src.state_dict().items()}, "__author__": "x"}, f)
    dst = _model()
    nn.init.zeros_(dst[0].weight)
    ckpt = Checkpointer(dst, str(tmp_path))
    assert ckpt.load(path) == {"__author__": "x"}  # a data-only pickle: read without allow_pickle
    assert torch.equal(dst[0].weight, src[0].weight)
