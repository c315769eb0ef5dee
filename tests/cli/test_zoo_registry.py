"""`kiln zoo` (hash-verified local cache; the suite runs with KILN_OFFLINE=1) and `kiln registry list`."""

from __future__ import annotations

import hashlib

import pytest

from kiln import model_zoo
from kiln.cli import main


def test_zoo_list_names_entries_and_their_configs(kiln_home, capsys):
    assert main(["zoo", "list"]) == 0
    out = capsys.readouterr().out
    assert "retinanet_r50_fpn_1x_coco" in out and "kiln::retinanet/retinanet_r50_fpn_1x_coco.py" in out
    assert "torchvision/resnet50" in out and "missing" in out


def test_zoo_list_configs_lists_every_shipped_concrete_config(capsys):
    assert main(["zoo", "list", "--configs"]) == 0
    out = capsys.readouterr().out.split()
    assert "kiln::faster_rcnn/faster_rcnn_r50_fpn_1x_coco.py" in out
    assert "kiln::shapes/retinanet_r18_fpn_shapes.py" in out
    assert not any("_base_" in line for line in out)


def test_every_shipped_config_loads():
    from kiln.config import Config

    for rel in model_zoo.list_configs(include_bases=True):
        cfg = Config.fromfile(model_zoo.resolve_config_path("kiln::" + rel))
        assert len(cfg) > 0, rel


def test_get_config_file_and_checkpoint_url():
    assert model_zoo.get_config_file("faster_rcnn_r50_fpn_1x_coco").endswith(
        "faster_rcnn/faster_rcnn_r50_fpn_1x_coco.py")
    assert model_zoo.get_checkpoint_url("torchvision/resnet101").endswith("resnet101-63fe2227.pth")


def test_missing_checkpoint_message_gives_url_and_destination(kiln_home, capsys):
    assert main(["zoo", "get", "torchvision/resnet18"]) == 2
    err = capsys.readouterr().err
    assert "https://download.pytorch.org/models/resnet18-f37072fd.pth" in err
    assert str(kiln_home / "checkpoints" / "resnet18-f37072fd.pth") in err
    assert "KILN_OFFLINE" in err  # the suite runs offline (tests/conftest.py)


def test_entry_without_published_checkpoint_says_so():
    with pytest.raises(model_zoo.ZooError, match="no published checkpoint"):
        model_zoo.get_checkpoint_url("shapes_retinanet_r18_fpn")


def test_unknown_zoo_name_suggests_close_names(capsys):
    assert main(["zoo", "get", "retinanet_r50_fpn_coco"]) == 2
    assert "retinanet_r50_fpn_1x_coco" in capsys.readouterr().err


def test_added_checkpoint_resolves_and_is_verified_by_hash(kiln_home, tmp_path, capsys):
    ckpt = tmp_path / "model.pth"
    ckpt.write_bytes(b"weights" * 100)
    assert main(["zoo", "add", "my_model", str(ckpt), "--config",
                 "kiln::shapes/retinanet_r18_fpn_shapes.py"]) == 0
    path = model_zoo.get_checkpoint_path("my_model")
    assert open(path, "rb").read() == ckpt.read_bytes()
    assert model_zoo.get_entry("my_model").sha256 == hashlib.sha256(ckpt.read_bytes()).hexdigest()
    assert model_zoo.get_config("my_model", trained=True).load_from == path
    # a corrupted cache file is refused, naming the file
    with open(path, "ab") as f:
        f.write(b"x")
    with pytest.raises(model_zoo.ZooError, match="corrupt"):
        model_zoo.get_checkpoint_path("my_model")


def test_prefix_hash_of_torchvision_entry_is_checked(kiln_home):
    entry = model_zoo.get_entry("torchvision/resnet18")
    dest = kiln_home / "checkpoints" / entry.cache_name
    dest.parent.mkdir(parents=True)
    dest.write_bytes(b"not the real resnet18")
    with pytest.raises(model_zoo.ZooError, match="does not match the recorded f37072fd"):
        model_zoo.get_checkpoint_path("torchvision/resnet18")


def test_zoo_get_builds_a_trained_model_from_the_cache(kiln_home, tmp_path):
    import torch

    model = model_zoo.get("shapes_retinanet_r18_fpn")  # untrained: random init, no file needed
    torch.save({"model": model.state_dict()}, tmp_path / "m.pth")
    model_zoo.add_entry("shapes_retinanet_r18_fpn", str(tmp_path / "m.pth"))
    loaded = model_zoo.get("shapes_retinanet_r18_fpn", trained=True)
    for (k, a), (_, b) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert torch.equal(a, b), k


def test_registry_list_shows_counts_and_entries_with_their_modules(capsys):
    assert main(["registry", "list"]) == 0
    out = capsys.readouterr().out
    assert "model" in out and "hook" in out
    assert main(["registry", "list", "models"]) == 0
    out = capsys.readouterr().out
    assert "RetinaNet" in out and "kiln.models" in out


def test_registry_list_unknown_registry_exits_2_with_suggestion(capsys):
    assert main(["registry", "list", "hok"]) == 2
    assert "hook" in capsys.readouterr().err
