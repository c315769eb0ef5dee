"""Few-shot dataset names in kiln's catalogs, as DeFRCN registers them.

Built-in (under ``$DETECTRON2_DATASETS``, default ``datasets/``; registered on first catalog use):

* VOC: ``voc_{2007,2012}_trainval_{base,all}{1,2,3}``, ``voc_2007_test_{base,novel,all}{1,2,3}`` and the
  K-shot sets ``voc_{2007,2012}_trainval_{novel,all}{split}_{K}shot_seed{S}`` (K in 1 2 3 5 10, S < 30)
  read from ``vocsplit/``;
* COCO: ``coco14_trainval_{all,base}``, ``coco14_test_{all,base,novel}`` (``cocosplit/datasplit/
  trainvalno5k.json``, ``5k.json``) and ``coco14_trainval_{novel,all}_{K}shot_seed{S}`` (K in 1 2 3 5 10
  30, S < 10) from ``cocosplit/``.

Any COCO-format dataset: :func:`register_fewshot_coco` registers the same family under a prefix.

Metadata of every name: ``thing_classes`` (the classes of that set, in label order), ``base_classes``,
``novel_classes``, ``fewshot_setting`` (``'base'``, ``'novel'`` or ``'all'``), and the file fields the
translator reads (``json_file``/``image_root`` or ``dirname``/``split``). K-shot sets are written to a
COCO json (in ``$KILN_DATA/fewshot`` or the given cache folder) the first time they are loaded.
"""

from __future__ import annotations

import hashlib
import json
import os
import os.path as osp
from collections.abc import Callable, Sequence
from typing import Any

from ..catalog import DatasetCatalog, MetadataCatalog, add_lazy_registrar
from .seeds import read_coco_seed_files, read_voc_seed_files, seed_dir
from .splits import COCO_NOVEL_IDS, voc_classes

__all__ = ["register_fewshot_coco", "register_all_fewshot", "fewshot_name", "VOC_SHOTS", "COCO_SHOTS"]

VOC_SHOTS = (1, 2, 3, 5, 10)
COCO_SHOTS = (1, 2, 3, 5, 10, 30)


def fewshot_name(prefix: str, which: str, shot: int, seed: int) -> str:
    """``{prefix}_{which}_{shot}shot_seed{seed}``, e.g. ``voc_2007_trainval_novel1_1shot_seed0``."""
    return f"{prefix}_{which}_{shot}shot_seed{seed}"


def _register(name: str, loader: Callable[[], list[dict]], **meta: Any) -> None:
    if name in DatasetCatalog:
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)
    DatasetCatalog.register(name, loader)
    MetadataCatalog.get(name).set(**meta)


def _fingerprint(folder: str) -> str:
    """Names, sizes and times of the files in ``folder``: the cache key of the sets read from it."""
    h = hashlib.sha1()
    if osp.isdir(folder):
        for entry in sorted(os.scandir(folder), key=lambda e: e.name):
            if entry.is_file():
                st = entry.stat()
                h.update(f"{entry.name}:{st.st_size}:{st.st_mtime_ns};".encode())
    return h.hexdigest()[:12]


def _materialized(name: str, cache_dir: str, make: Callable[[], dict[str, Any]], image_root: str,
                  seed_folder: str) -> Callable[[], list[dict]]:
    """A loader writing ``make()``'s COCO dict to ``cache_dir/name-<fingerprint>.json`` (once per state of
    the seed files in ``seed_folder``, so replaced seed files are read again), recording it as the set's
    ``json_file``, and returning its dataset dicts."""

    def load() -> list[dict]:
        from kiln.data.datasets.coco import load_coco_json

        path = osp.join(cache_dir, f"{name}-{_fingerprint(seed_folder)}.json")
        if not osp.isfile(path):
            os.makedirs(cache_dir, exist_ok=True)
            tmp = f"{path}.{os.getpid()}.tmp"
            with open(tmp, "w") as f:
                json.dump(make(), f)
            os.replace(tmp, path)
        meta = MetadataCatalog.get(name)
        if meta.get("json_file") != path:
            meta.set(json_file=path, image_root=image_root)
        return load_coco_json(path, image_root, None)  # the metadata is ours (evaluator_type, classes)

    return load


def _coco_subset(json_file: str, image_root: str, classes: Sequence[str]) -> Callable[[], list[dict]]:
    """Dataset dicts of ``json_file`` with only ``classes`` (labels in that order)."""

    def load() -> list[dict]:
        from kiln.data.datasets.coco import load_coco_json

        with open(json_file) as f:
            names = [c["name"] for c in sorted(json.load(f)["categories"], key=lambda c: c["id"])]
        new = {i: list(classes).index(n) for i, n in enumerate(names) if n in classes}
        dicts = load_coco_json(json_file, image_root, None)
        for d in dicts:
            d["annotations"] = [dict(a, category_id=new[a["category_id"]]) for a in d["annotations"]
                                if a["category_id"] in new]
        return dicts

    return load


def register_fewshot_coco(prefix: str, train_json: str, train_root: str, test_json: str, test_root: str,
                          base_classes: Sequence[str], novel_classes: Sequence[str], seed_root: str,
                          shots: Sequence[int], seeds: Sequence[int], cache_dir: str,
                          evaluator_type: str = "coco") -> list[str]:
    """Register a few-shot family for a COCO-format dataset; return the names.

    Names: ``{prefix}_trainval_{base,all}``, ``{prefix}_test_{base,novel,all}`` (the whole files, classes
    restricted) and ``{prefix}_trainval_{novel,all}_{K}shot_seed{S}`` read from ``seed_root``
    (:func:`~.seeds.read_coco_seed_files` layout). The "all" class order is base classes, then novel.
    """
    base, novel = list(base_classes), list(novel_classes)
    if set(base) & set(novel):
        raise ValueError(f"classes {sorted(set(base) & set(novel))} are both base and novel")
    sets = {"base": base, "novel": novel, "all": base + novel}
    common = dict(base_classes=base, novel_classes=novel, evaluator_type=evaluator_type)
    names = []
    for part, jf, root, whiches in (("trainval", train_json, train_root, ("base", "all")),
                                    ("test", test_json, test_root, ("base", "novel", "all"))):
        for which in whiches:
            name = f"{prefix}_{part}_{which}"
            _register(name, _coco_subset(jf, root, sets[which]), thing_classes=sets[which], json_file=jf,
                      image_root=root, fewshot_setting=which, **common)
            names.append(name)
    for which in ("novel", "all"):
        for shot in shots:
            for seed in seeds:
                name = fewshot_name(f"{prefix}_trainval", which, shot, seed)
                classes = sets[which]

                def make(classes: list[str] = classes, shot: int = shot, seed: int = seed) -> dict:
                    return read_coco_seed_files(seed_root, classes, shot, seed, image_root="")

                loader = _materialized(name, cache_dir, make, train_root, seed_dir(seed_root, seed))
                _register(name, loader, thing_classes=classes,
                          fewshot_setting=which, shot=shot, seed=seed, **common)
                names.append(name)
    return names


def _cache_dir() -> str:
    from kiln.data.datasets.shapes import default_data_root

    return osp.join(default_data_root(), "fewshot")


def _published(split_root: str, shots: Sequence[int], file_of: Callable[[int], str]) -> list[tuple[int, int]]:
    """(shot, seed) pairs whose seed files exist in ``split_root`` (``seed{S}/``; seed 0 also at the top)."""
    if not osp.isdir(split_root):
        return []
    seeds = sorted(int(d[4:]) for d in os.listdir(split_root) if d.startswith("seed") and d[4:].isdigit())
    if 0 not in seeds:
        seeds.insert(0, 0)
    return [(k, s) for s in seeds for k in shots if osp.isfile(osp.join(seed_dir(split_root, s), file_of(k)))]


def _voc_subset(dirname: str, split: str, classes: list[str]) -> list[dict]:
    """Dataset dicts of a VOC folder keeping only the objects of ``classes`` (labels in that order)."""
    from kiln.data.datasets.pascal_voc import parse_voc_xml, read_voc_split
    from kiln.structures.boxes import BoxMode

    dicts = []
    for fid in read_voc_split(osp.join(dirname, "ImageSets", "Main", split + ".txt")):
        parsed = parse_voc_xml(osp.join(dirname, "Annotations", fid + ".xml"), classes, skip_unknown=True)
        dicts.append(dict(file_name=osp.join(dirname, "JPEGImages", fid + ".jpg"), image_id=fid,
                          height=parsed["height"], width=parsed["width"],
                          annotations=[dict(category_id=o["label"], bbox=o["bbox"],
                                            bbox_mode=BoxMode.XYXY_ABS, difficult=o["difficult"], iscrowd=0)
                                       for o in parsed["objects"]]))
    return dicts


def _register_voc(root: str) -> None:
    cache = _cache_dir()
    for split in (1, 2, 3):
        common = dict(base_classes=voc_classes(split, "base"), novel_classes=voc_classes(split, "novel"),
                      evaluator_type="pascal_voc")
        for year, part, which in [(y, "trainval", w) for y in (2007, 2012) for w in ("base", "all")] + [
                (2007, "test", w) for w in ("base", "novel", "all")]:
            name = f"voc_{year}_{part}_{which}{split}"
            dirname = osp.join(root, f"VOC{year}")
            classes = voc_classes(split, which)

            def load(dirname: str = dirname, part: str = part, classes: list[str] = classes) -> list[dict]:
                return _voc_subset(dirname, part, classes)

            _register(name, load, thing_classes=classes, dirname=dirname, split=part, year=year,
                      fewshot_setting=which, **common)
        for which in ("novel", "all"):
            classes = voc_classes(split, which)
            for year in (2007, 2012):
                for shot, seed in _published(osp.join(root, "vocsplit"), VOC_SHOTS,
                                             lambda k, c=classes[0]: f"box_{k}shot_{c}_train.txt"):
                    name = fewshot_name(f"voc_{year}_trainval", f"{which}{split}", shot, seed)

                    def make(classes: list[str] = classes, shot: int = shot, seed: int = seed) -> dict:
                        return read_voc_seed_files(osp.join(root, "vocsplit"), classes, shot, seed, root)

                    folder = seed_dir(osp.join(root, "vocsplit"), seed)
                    _register(name, _materialized(name, cache, make, "", folder), thing_classes=classes,
                              year=year, fewshot_setting=which, shot=shot, seed=seed, **common)


def _register_coco(root: str) -> None:
    from kiln.data.builtin_meta import COCO_CATEGORIES

    all_names = [name for _, name in COCO_CATEGORIES]
    novel = [name for i, name in COCO_CATEGORIES if i in COCO_NOVEL_IDS]
    base = [name for i, name in COCO_CATEGORIES if i not in COCO_NOVEL_IDS]
    sets = {"base": base, "novel": novel, "all": all_names}  # "all" in COCO id order, as DeFRCN
    common = dict(base_classes=base, novel_classes=novel, evaluator_type="coco")
    files = {"trainval": ("coco/trainval2014", "cocosplit/datasplit/trainvalno5k.json"),
             "test": ("coco/val2014", "cocosplit/datasplit/5k.json")}
    for part, whiches in (("trainval", ("all", "base")), ("test", ("all", "base", "novel"))):
        img_dir, ann = (osp.join(root, p) for p in files[part])
        for which in whiches:
            _register(f"coco14_{part}_{which}", _coco_subset(ann, img_dir, sets[which]),
                      thing_classes=sets[which], json_file=ann, image_root=img_dir, fewshot_setting=which,
                      **common)
    img_dir = osp.join(root, files["trainval"][0])
    for which in ("novel", "all"):
        for shot, seed in _published(osp.join(root, "cocosplit"), COCO_SHOTS,
                                     lambda k: f"full_box_{k}shot_{all_names[0]}_trainval.json"):
            name = fewshot_name("coco14_trainval", which, shot, seed)

            def make(classes: list[str] = sets[which], shot: int = shot, seed: int = seed) -> dict:
                return read_coco_seed_files(osp.join(root, "cocosplit"), classes, shot, seed)

            folder = seed_dir(osp.join(root, "cocosplit"), seed)
            _register(name, _materialized(name, _cache_dir(), make, img_dir, folder),
                      thing_classes=sets[which], fewshot_setting=which, shot=shot, seed=seed, **common)


def register_all_fewshot(root: str | None = None) -> None:
    """Register DeFRCN's VOC and COCO few-shot names (the files are read only when a name is used)."""
    from kiln.data.builtin import datasets_root

    root = root or datasets_root()
    _register_voc(root)
    _register_coco(root)


add_lazy_registrar(register_all_fewshot)
