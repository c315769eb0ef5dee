"""Environment report, Timer, lazy imports, seeding and plain-python conversion."""

import random
import subprocess
import sys

import numpy as np
import pytest

from kiln.utils import Timer, collect_env_info, get_env_info, lazy_import, require, set_random_seed, to_plain


def test_env_info_names_versions_and_git_hash():
    from importlib import metadata

    import torch

    info = get_env_info()
    assert info["PyTorch"].startswith(torch.__version__)
    assert info["torchvision"] == metadata.version("torchvision")
    assert info["pycocotools"] == metadata.version("pycocotools")
    assert "CUDA available" in info and "Python" in info
    head = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                          cwd=info["kiln"].split(" @ ")[1]).stdout.strip()
    assert info["kiln git hash"] == (head or "unknown")
    text = collect_env_info()
    assert "PyTorch" in text and "kiln git hash" in text


def test_importing_kiln_utils_does_not_import_torch():
    code = "import sys, kiln.utils; print('torch' in sys.modules, 'numpy' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]


def test_timer_pause_excludes_paused_time():
    t = Timer()
    t.pause()
    paused_at = t.seconds()
    assert t.is_paused() and t.seconds() == paused_at  # frozen while paused
    t.resume()
    assert t.seconds() >= paused_at
    with pytest.raises(ValueError, match="not paused"):
        t.resume()


def test_lazy_import_defers_and_missing_package_says_how_to_install():
    mod = lazy_import("json")
    assert mod.dumps([1]) == "[1]"
    with pytest.raises(ImportError, match=r"MyWriter needs the optional package 'no_such_pkg_kiln'.*pip"):
        require("no_such_pkg_kiln", "MyWriter")
    missing = lazy_import("no_such_pkg_kiln")  # creating the proxy is fine ...
    with pytest.raises(ImportError, match="no_such_pkg_kiln"):
        _ = missing.anything  # ... using it is not


def test_set_random_seed_makes_python_numpy_torch_repeat():
    import torch

    def draw():
        return random.random(), np.random.rand(), torch.rand(1).item()

    assert set_random_seed(7) == 7
    a = draw()
    set_random_seed(7)
    assert draw() == a


def test_to_plain_converts_numpy_recursively():
    out = to_plain({"a": np.float32(1.5), "b": (np.arange(2), [np.int64(3)])})
    assert out == {"a": 1.5, "b": [[0, 1], [3]]}
    assert type(out["a"]) is float
