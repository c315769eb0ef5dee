"""Every MMDetection and Detectron2 zoo entry: its config builds the architecture its name spells, and the
publisher's checkpoint of that architecture loads into it strictly.

* Every entry, cheaply: the model is built on the meta device (shapes, no memory, no initialisation), its
  name is checked against what was built (detector, ResNet depth, ResNeXt groups, C4/DC5/FPN, caffe
  style, classes, schedule) and against facts about the publisher's files (MMDetection's tensor names
  and shapes), and the publisher's layout of its state dict converts onto it with nothing missing,
  unexpected or mis-shaped (Detectron2: its module names and size-major anchor order, written by the
  test helper independently of kiln's converter).
* One entry per family, for real: a random-weight checkpoint written the way the publisher writes it
  (MMDetection ``meta`` + ``state_dict``; Detectron2 pickle of numpy arrays) is served by a loopback
  server standing in for the publisher, ``kiln zoo get NAME`` downloads it, ``model_zoo.get(NAME,
  trained=True)`` loads it strictly and the detections equal the source model's.
"""

from __future__ import annotations

import dataclasses
import json
import re
from urllib.parse import urlparse

import pytest
import torch
from loopback import Loopback
from upstream_helpers import upstream_configs
from zoo_publishers import kiln_to_detectron2, model_anchor_slots, randomize_bn, write_pickle

from kiln import model_zoo
from kiln.checkpoint_convert import convert_for_model
from kiln.cli import main
from kiln.config import Config
from kiln.models import build_detector
from kiln.models.task_modules.anchor_generator import AnchorGenerator

ENTRIES = [e for e in model_zoo.list_entries()
           if e.config and e.url and e.publisher in ("MMDetection", "Detectron2")]
DETECTORS = {"retinanet": "RetinaNet", "faster_rcnn": "FasterRCNN", "cascade_rcnn": "CascadeRCNN",
             "rpn": "RPN", "fast_rcnn": "FastRCNN"}
MM_NAME = re.compile(r"^(?P<arch>retinanet|faster_rcnn|cascade_rcnn|rpn)_"
                     r"(?P<bb>r50|r101|x101_32x4d|x101_64x4d)(?P<caffe>_caffe)?_(?P<neck>fpn|c4|dc5)_(?P<sched>1x|2x|20e)_coco$")
D2_NAME = re.compile(r"^(?P<group>[\w-]+)/(?P<arch>retinanet|faster_rcnn|rpn|fast_rcnn)_"
                     r"(?P<bb>R_50|R_101|X_101_32x8d)_(?P<neck>FPN|C4|DC5)(_noaug)?(_(?P<sched>1x|3x))?$")
# conv2 of the first bottleneck: (width, width / groups), the ResNet/ResNeXt variant a checkpoint is for
CONV2 = {"r50": (64, 64), "r101": (64, 64), "x101_32x4d": (128, 4), "x101_64x4d": (256, 4),
         "R_50": (64, 64), "R_101": (64, 64), "X_101_32x8d": (256, 8)}
# Tensors of MMDetection's published files (their names and shapes; 80 COCO classes), per family.
MM_FACTS = {
    "retinanet_fpn": {"bbox_head.retina_cls.weight": (720, 256, 3, 3),
                      "bbox_head.retina_reg.weight": (36, 256, 3, 3)},
    "faster_rcnn_fpn": {"rpn_head.rpn_cls.weight": (3, 256, 1, 1),
                        "roi_head.bbox_head.fc_reg.weight": (320, 1024),
                        "roi_head.bbox_head.shared_fcs.0.weight": (1024, 256 * 49)},
    "cascade_rcnn_fpn": {f"roi_head.bbox_head.{i}.fc_reg.weight": (4, 1024) for i in range(3)}
    | {"roi_head.bbox_head.2.fc_cls.weight": (81, 1024)},
    "rpn_fpn": {"rpn_head.rpn_cls.weight": (3, 256, 1, 1), "rpn_head.rpn_reg.weight": (12, 256, 1, 1)},
    "faster_rcnn_c4": {"rpn_head.rpn_cls.weight": (15, 1024, 1, 1),
                       "roi_head.bbox_head.fc_cls.weight": (81, 2048),
                       "roi_head.shared_head.layer4.2.conv3.weight": (2048, 512, 1, 1)},
    "faster_rcnn_dc5": {"rpn_head.rpn_conv.weight": (2048, 2048, 3, 3),
                        "roi_head.bbox_head.shared_fcs.0.weight": (1024, 2048 * 49)},
}


@pytest.fixture
def on_meta(monkeypatch):
    """Build models on the meta device; anchor generators stay on the CPU (their base anchors are data)."""
    init = AnchorGenerator.__init__

    def init_on_cpu(self, *args, **kwargs):
        with torch.device("cpu"):
            init(self, *args, **kwargs)

    monkeypatch.setattr(AnchorGenerator, "__init__", init_on_cpu)
    with torch.device("meta"):
        yield


def _expected(entry) -> dict:
    m = (D2_NAME if entry.publisher == "Detectron2" else MM_NAME).match(entry.name)
    assert m, f"zoo name {entry.name!r} does not follow its publisher's naming"
    neck = m.group("neck").lower()
    d2 = entry.publisher == "Detectron2"
    return dict(arch=m.group("arch"), neck=neck, conv2=CONV2[m.group("bb")], sched=m.group("sched"),
                depth=101 if "101" in m.group("bb") else 50,
                # MSRA's caffe-style ResNets put the stride in the 1x1 conv (Detectron2's R-50/R-101)
                caffe=bool(m.group("caffe")) if not d2 else not m.group("bb").startswith("X"),
                classes=20 if entry.name.startswith("PascalVOC") else 80)


def _check_architecture(model, state, exp) -> None:
    assert type(model).__name__ == DETECTORS[exp["arch"]]
    assert tuple(state["backbone.layer1.0.conv2.weight"].shape[:2]) == exp["conv2"]
    assert len(model.backbone.layer3) == {50: 6, 101: 23}[exp["depth"]]
    first = model.backbone.layer2[0]
    stride_in = first.conv1.stride if exp["caffe"] else first.conv2.stride
    assert stride_in == (2, 2), "caffe-style ResNets stride in the 1x1 conv, pytorch-style in the 3x3"
    assert (getattr(model, "neck", None) is not None) == (exp["neck"] == "fpn")
    c4_head = exp["neck"] == "c4" and exp["arch"] != "rpn"  # an RPN-only C4 model stops at res4
    assert any(k.startswith("roi_head.shared_head.layer4.") for k in state) == c4_head
    assert any(k.startswith("backbone.layer4.") for k in state) == (exp["neck"] != "c4")
    if exp["neck"] == "dc5":
        assert model.backbone.layer4[0].conv2.dilation == (2, 2)
    for key, value in state.items():
        if key.endswith("fc_cls.weight"):
            assert value.shape[0] == exp["classes"] + 1, key
        if key.endswith("retina_cls.weight"):
            assert value.shape[0] == 9 * exp["classes"], key


@pytest.mark.parametrize("entry", ENTRIES, ids=[e.name for e in ENTRIES])
def test_entry_config_builds_its_architecture_and_takes_the_publishers_layout(entry, on_meta):
    exp = _expected(entry)
    model = model_zoo.build_model(entry.config)
    state = model.state_dict()
    _check_architecture(model, state, exp)
    if entry.publisher == "MMDetection":
        assert entry.config == f"kiln::{exp['arch']}/{entry.name}.py"  # MMDetection's config name
        assert Config.fromfile(model_zoo.get_config_file(entry.name)).total_epochs == {
            "1x": 12, "2x": 24, "20e": 20}[exp["sched"]]
        for key, shape in MM_FACTS[f"{exp['arch']}_{exp['neck']}"].items():
            assert tuple(state[key].shape) == shape, key
        published = state  # MMDetection's files use the model's own names
    else:
        cfg = model_zoo.get_config(entry.name)
        assert cfg.SOLVER.MAX_ITER == {"1x": 90000, "3x": 270000, None: 18000}[exp["sched"]]
        first_level = 3 if exp["arch"] == "retinanet" else 2
        published = kiln_to_detectron2(state, first_level, model_anchor_slots(model), as_numpy=False)
        assert any(k.startswith("backbone.bottom_up.res2." if exp["neck"] == "fpn" else "backbone.res2.")
                   for k in published)
    _, report = convert_for_model(published, state, model=model)
    assert report.missing == [] and report.unexpected == [] and report.shape_mismatch == [], report.format()


# ---------------------------------------------------------------------- one real round trip per family
# The families this zoo gained (MMDetection's Cascade R-CNN, RPN and C4; Detectron2's VOC C4 and
# Detectron1-style FPN rows), at full size. DC5 (a 100M-weight fc6: a 400 MB file) and the ResNet-101 /
# ResNeXt variants add only sizes to these names: the meta-device test above covers their layouts.
FAMILIES = [
    "cascade_rcnn_r50_fpn_1x_coco", "rpn_r50_fpn_1x_coco", "faster_rcnn_r50_caffe_c4_1x_coco",
    "PascalVOC-Detection/faster_rcnn_R_50_C4", "Detectron1-Comparisons/faster_rcnn_R_50_FPN_noaug_1x",
]


def _randomised(name):
    """The entry's model with weights a trained model could have: BN statistics and biases away from
    their initial values, class 0 favoured and box deltas moderate, so that random weights still give
    detections."""
    torch.manual_seed(0)
    model = model_zoo.get(name)
    randomize_bn(model)
    with torch.no_grad():
        for key, p in model.named_parameters():
            if key.endswith("bias"):
                p.copy_(torch.randn_like(p))
            if key.endswith("fc_cls.bias"):
                p[0] += 10.0
            if key.endswith(("rpn_reg.weight", "fc_reg.weight")):
                p.mul_(1e-4)  # unnormalised random features are large: keep the box deltas moderate
    return model.eval()


def _publish(entry, model, path) -> None:
    state = model.state_dict()
    if entry.publisher == "MMDetection":
        torch.save({"meta": {"mmdet_version": "2.28.2", "epoch": 12, "config": f"# {entry.name}\n",
                             "CLASSES": tuple(f"class{i}" for i in range(80))},
                    "state_dict": state}, path)
    else:
        first_level = 3 if "retinanet" in entry.name else 2
        d2 = kiln_to_detectron2(state, first_level, model_anchor_slots(model))
        write_pickle({"model": d2, "__author__": "Detectron2 Model Zoo", "matching_heuristics": True}, path,
                     protocol=4)


def _inputs():
    # small: a C4 model runs its whole res5 stage on every proposal
    image = torch.randint(0, 256, (3, 48, 64), generator=torch.Generator().manual_seed(3), dtype=torch.uint8)
    return [dict(image=image, height=48, width=64, image_id=1)]


@pytest.mark.parametrize("name", FAMILIES)
def test_published_checkpoint_downloads_and_loads_strictly_with_the_same_detections(
        name, tmp_path, monkeypatch, capsys):
    entry = model_zoo.get_entry(name)
    monkeypatch.delenv("KILN_OFFLINE", raising=False)
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("KILN_HOME", str(home))
    src = _randomised(name)
    published = tmp_path / entry.cache_name
    _publish(entry, src, str(published))
    if entry.sha256:  # the publisher's hash is of the real file; record this file's under the same name
        row = {k: v for k, v in dataclasses.asdict(entry).items() if k != "name"}
        row["sha256"] = model_zoo.sha256sum(published)
        (home / "zoo.json").write_text(json.dumps({entry.name: row}))
    with Loopback({urlparse(entry.url).path: published.read_bytes()}) as server:
        monkeypatch.setenv("KILN_ZOO_MIRROR", server.url)
        assert main(["zoo", "get", name]) == 0
    out = capsys.readouterr().out
    cached = re.search(r"^checkpoint: (.+)$", out, re.M).group(1)
    assert cached.startswith(str(home)) and open(cached, "rb").read() == published.read_bytes()
    assert f"published: {entry.metric} {entry.box_ap} on {entry.dataset} ({entry.publisher})" in out
    loaded = model_zoo.get(name, trained=True)  # strict: raises when a model tensor is missing
    got = {k: v for k, v in loaded.state_dict().items() if not k.endswith("num_batches_tracked")}
    for key, value in src.state_dict().items():
        if key in got:
            assert torch.equal(got[key], value), key
    with torch.no_grad():
        expected, actual = src(_inputs())[0], loaded(_inputs())[0]
    boxes = "proposals" if "proposals" in expected else "boxes"
    assert len(expected[boxes]) > 0
    for key in expected:
        if isinstance(expected[key], torch.Tensor):
            torch.testing.assert_close(actual[key], expected[key], rtol=0, atol=0)


# ---------------------------------------------------------------------- the docs and the model builder
def test_docs_list_every_entry_with_its_figure_and_test_command():
    import pathlib

    doc = (pathlib.Path(__file__).parents[2] / "docs" / "zoo.md").read_text()
    rows = {line.split("|")[1].strip(" `"): line for line in doc.splitlines() if line.startswith("| `")}
    for e in model_zoo.list_entries():
        if e.url and e.config and e.box_ap is not None:
            assert e.name in rows, f"docs/zoo.md does not list {e.name}"
            row = rows[e.name]
            assert f"{e.metric} {e.box_ap}" in row and f"`kiln test {e.config} $CKPT`" in row


def test_build_model_leaves_a_loop_train_cfg_to_the_runner(tmp_path, on_meta):
    """A top-level ``train_cfg`` with a ``type`` is the training loop (MMDetection 3.x, Detectron2's
    canonical form), not the model's assigner settings; a v1-style one is the model's."""
    cfg = tmp_path / "mine.py"
    cfg.write_text("_base_ = 'kiln::rpn/rpn_r50_fpn_1x_coco.py'\n"
                   "train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=12, val_interval=1)\n")
    assert type(model_zoo.build_model(str(cfg))).__name__ == "RPN"
    cfg.write_text("_base_ = 'kiln::rpn/rpn_r50_fpn_1x_coco.py'\n"
                   "test_cfg = dict(rpn=dict(nms_pre=10, max_per_img=5, min_bbox_size=0,\n"
                   "                         nms=dict(type='nms', iou_threshold=0.5)))\n")
    with pytest.raises(ValueError, match="test_cfg is given both"):
        model_zoo.build_model(str(cfg))  # differs from model.test_cfg: the builder refuses the ambiguity


def test_zoo_list_names_the_test_set_of_a_figure_not_on_coco(capsys):
    assert main(["zoo", "list"]) == 0
    rows = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()[1:]}
    assert "box AP 51.9 (VOC2007 test)" in rows["PascalVOC-Detection/faster_rcnn_R_50_C4"]
    cascade = rows["cascade_rcnn_r50_fpn_1x_coco"]
    assert "box AP 40.3 " in cascade and "VOC" not in cascade


# ---------------------------------------------------------------------- the same network as the publisher's
MM_ENTRIES = [e for e in ENTRIES if e.publisher == "MMDetection"]


def _plain(value, depth=0):
    """A setting as plain data: tensors as lists (shapes on the meta device), helper objects (box coders,
    anchor generators) as their attributes; ``iou_thr`` (MMDetection before 2.3) read as ``iou_threshold``."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, torch.Tensor):
        return tuple(value.shape) if value.is_meta else value.tolist()
    if isinstance(value, (list, tuple)):
        return [_plain(v, depth) for v in value]
    if isinstance(value, dict):
        return {("iou_threshold" if k == "iou_thr" else str(k)): _plain(v, depth) for k, v in value.items()}
    if isinstance(value, torch.nn.Module):
        return None  # compared as a module of its own
    if hasattr(value, "__dict__") and depth < 3:
        return {type(value).__name__: {k: _plain(v, depth + 1) for k, v in vars(value).items()
                                       if not k.startswith("_")}}
    return repr(value)


def _settings(model) -> dict:
    """Every module's class and attributes (conv strides and dilations, RoIAlign output size and sampling,
    anchors, box coder stds, test-time NMS, the ImageNet weights it starts from...). Losses, assigners,
    samplers and train_cfg only train, and changed across 2.x releases after these weights were trained,
    so they are left out."""
    def kept(key: str) -> bool:
        return not key.startswith("_") and key not in ("training", "train_cfg") and not key.endswith(
            ("assigner", "sampler"))

    return {name: (type(m).__name__, {k: _plain(v) for k, v in vars(m).items() if kept(k)})
            for name, m in model.named_modules() if "loss_" not in name}


@pytest.mark.parametrize("entry", MM_ENTRIES, ids=[e.name for e in MM_ENTRIES])
def test_shipped_config_is_the_network_of_mmdetections_config_of_that_name(entry, on_meta):
    """The weights were trained and measured with MMDetection 2.x's config of the entry's name: the
    shipped config must build the same modules with the same settings."""
    arch = entry.config.split("::")[1].split("/")[0]
    theirs = build_detector(Config.fromfile(f"{upstream_configs('2.28.2')}/{arch}/{entry.name}.py").model)
    ours = build_detector(Config.fromfile(model_zoo.get_config_file(entry.name)).model)  # with `pretrained`
    theirs, ours = _settings(theirs), _settings(ours)
    assert list(ours) == list(theirs)
    assert {k: v for k, v in ours.items() if theirs[k] != v} == {}


def test_trained_config_drops_every_imagenet_initialisation(tmp_path, monkeypatch):
    """``get_config(NAME, trained=True)`` starts from the zoo checkpoint: neither the backbone's
    ``pretrained`` nor a C4 model's shared-head ``init_cfg`` may fetch (or overwrite with) ImageNet
    weights."""
    from kiln.model_zoo.download import cache_path_for

    name = "faster_rcnn_r50_caffe_c4_1x_coco"
    monkeypatch.setenv("KILN_HOME", str(tmp_path))
    monkeypatch.setenv("KILN_OFFLINE", "1")
    entry = model_zoo.get_entry(name)
    cached = cache_path_for(entry.url)
    cached.parent.mkdir(parents=True, exist_ok=True)
    cached.write_bytes(b"a checkpoint")
    row = {k: v for k, v in dataclasses.asdict(entry).items() if k != "name"}
    (tmp_path / "zoo.json").write_text(json.dumps({name: dict(row, sha256=model_zoo.sha256sum(cached))}))
    untrained = model_zoo.get_config(name)
    assert untrained.model.pretrained == "open-mmlab://detectron2/resnet50_caffe"
    assert untrained.model.roi_head.shared_head.init_cfg.checkpoint == "open-mmlab://detectron2/resnet50_caffe"
    trained = model_zoo.get_config(name, trained=True)
    assert trained.load_from == str(cached)
    assert trained.model.pretrained is None and trained.model.roi_head.shared_head.init_cfg is None
