"""Environment report: versions of python, torch, torchvision, CUDA, kiln and the git commit."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from typing import Any

__all__ = ["get_env_info", "collect_env_info", "get_git_hash"]


def get_git_hash(path: str | None = None, digits: int | None = None) -> str:
    """The commit hash of the git checkout containing ``path`` (default: kiln's source), or ``'unknown'``.

    A ``+dirty`` suffix is not added: the hash names the commit, the log shows the rest.
    """
    if path is None:
        path = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=path, capture_output=True, text=True, timeout=5, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    sha = out.stdout.strip()
    if out.returncode != 0 or not sha:
        return "unknown"
    return sha[:digits] if digits else sha


def get_env_info() -> dict[str, Any]:
    """The environment as a flat ``{name: value}`` dict of plain strings/ints (safe to JSON-dump)."""
    import kiln

    info: dict[str, Any] = {
        "sys.platform": sys.platform,
        "Python": sys.version.replace("\n", " "),
        "machine": platform.machine(),
        "numpy": _version_of("numpy"),
        "kiln": f"{kiln.__version__} @ {os.path.dirname(os.path.abspath(kiln.__file__))}",
        "kiln git hash": get_git_hash(),
    }
    try:
        import torch
    except ImportError:
        info["PyTorch"] = "not installed"
        return info
    info["PyTorch"] = f"{torch.__version__} @ {os.path.dirname(torch.__file__)}"
    info["PyTorch debug build"] = bool(torch.version.debug)
    cuda_ok = torch.cuda.is_available()
    info["CUDA available"] = cuda_ok
    info["CUDA (compiled)"] = torch.version.cuda or "none"
    if cuda_ok:
        names: dict[str, list[str]] = {}
        for i in range(torch.cuda.device_count()):
            names.setdefault(torch.cuda.get_device_name(i), []).append(str(i))
        for name, ids in names.items():
            info[f"GPU {','.join(ids)}"] = name
        info["cuDNN"] = str(torch.backends.cudnn.version())
    info["torchvision"] = _version_of("torchvision")
    info["torch threads"] = torch.get_num_threads()
    info["distributed backends"] = ",".join(
        b for b in ("gloo", "nccl", "mpi") if getattr(torch.distributed, f"is_{b}_available", lambda: False)()
    )
    for name in ("cv2", "pycocotools", "tensorboard", "fsspec"):
        info[name] = _version_of(name)
    return info


_DISTRIBUTIONS = {
    "cv2": ("opencv-python-headless", "opencv-python", "opencv-contrib-python-headless",
            "opencv-contrib-python"),
}


def _version_of(module: str) -> str:
    """Version of ``module`` from package metadata (no import: torchvision alone takes seconds to import)."""
    from importlib import metadata

    # Metadata first, so the report does not depend on what happens to be imported already.
    for dist in _DISTRIBUTIONS.get(module, (module,)):
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    loaded = sys.modules.get(module)
    if loaded is not None and getattr(loaded, "__version__", None):
        return str(loaded.__version__)
    return "not installed"


def collect_env_info() -> str:
    """The environment report as an aligned two-column text table (what ``kiln train`` logs first)."""
    info = get_env_info()
    width = max(len(k) for k in info)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in info.items())
