"""``--import MODULE``: a user's own dataset registrations reach a Detectron2 yaml without editing kiln."""

from __future__ import annotations

import textwrap

import pytest

from kiln.cli import main


@pytest.fixture
def project(tmp_path):
    from kiln.data.datasets import generate_shapes_dataset

    p = generate_shapes_dataset(str(tmp_path / "data"), num_images=2, image_size=64, split="train")
    plugin = tmp_path / "my_datasets.py"
    plugin.write_text(textwrap.dedent(f"""
        from kiln.data import DatasetCatalog
        from kiln.data.datasets import register_coco_instances
        if "plugin_shapes_train" not in DatasetCatalog.list():
            register_coco_instances("plugin_shapes_train", {{}}, {p["ann_file"]!r}, {p["img_prefix"]!r})
    """))
    cfg = tmp_path / "x.yaml"
    from kiln.model_zoo import resolve_config_path

    base = resolve_config_path("kiln::detectron2/Base-RetinaNet.yaml")
    cfg.write_text(f'_BASE_: "{base}"\n'
                   'DATASETS:\n  TRAIN: ("plugin_shapes_train",)\n  TEST: ()\n'
                   "MODEL:\n  WEIGHTS: ''\n  RETINANET:\n    NUM_CLASSES: 3\n")
    return tmp_path, plugin, cfg, p


def test_a_registered_name_needs_its_module_imported(project, capsys, monkeypatch):
    tmp, plugin, cfg, p = project
    monkeypatch.chdir(tmp)
    from kiln.data import DatasetCatalog

    if "plugin_shapes_train" in DatasetCatalog.list():
        DatasetCatalog.remove("plugin_shapes_train")
    assert main(["config", "print", str(cfg)]) == 2
    assert "plugin_shapes_train" in capsys.readouterr().err
    assert main(["config", "print", str(cfg), "--import", "my_datasets"]) == 0  # a module in the cwd
    assert p["ann_file"] in capsys.readouterr().out
    DatasetCatalog.remove("plugin_shapes_train")
    assert main(["config", "print", str(cfg), "--import", str(plugin)]) == 0  # a .py path
    assert p["ann_file"] in capsys.readouterr().out


def test_a_module_that_cannot_be_imported_is_one_clear_error(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "broken.py").write_text("raise RuntimeError('dataset root not mounted')\n")
    assert main(["config", "print", "kiln::shapes/retinanet_r18_fpn_shapes.py", "--import", "broken"]) == 2
    err = capsys.readouterr().err
    assert "--import broken: RuntimeError: dataset root not mounted" in err and "Traceback" not in err
    assert main(["config", "print", "kiln::shapes/retinanet_r18_fpn_shapes.py", "--import", "nope_mod"]) == 2
    assert "--import nope_mod: ModuleNotFoundError" in capsys.readouterr().err


def test_custom_imports_of_a_module_in_the_current_directory_work_with_the_console_script(tmp_path):
    """`python -m kiln` puts the current directory on sys.path, the installed `kiln` script did not."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    script = Path(sys.executable).parent / "kiln"
    assert script.is_file(), f"{script} missing: install kiln into the venv (make .venv/.kiln-installed)"
    (tmp_path / "my_hooks.py").write_text(textwrap.dedent("""
        from kiln.registry import HOOKS
        from kiln.engine.hooks import Hook

        @HOOKS.register_module()
        class MyProjectHook(Hook):
            pass
    """))
    (tmp_path / "cfg.py").write_text(
        "_base_ = 'kiln::shapes/retinanet_r18_fpn_shapes.py'\n"
        "custom_imports = dict(imports=['my_hooks'], allow_failed_imports=False)\n"
        "custom_hooks = [dict(type='MyProjectHook')]\n")
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[2]))
    proc = subprocess.run([str(script), "config", "print", "cfg.py"], cwd=str(tmp_path),
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]  # (before: "failed to import 'my_hooks'")
    assert "MyProjectHook" in proc.stdout
