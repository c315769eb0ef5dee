"""Visualization backends (MMEngine ``vis_backends``): where a visualizer's images, scalars and config go.

A visualizer (:class:`~kiln.visualization.det_visualizer.DetLocalVisualizer`) draws; its backends
record. Each backend has the same five methods as MMEngine's, so an MMDetection 3.x config's
``visualizer=dict(type='DetLocalVisualizer', vis_backends=[dict(type='LocalVisBackend'),
dict(type='TensorboardVisBackend')])`` runs as written:

* ``add_image(name, image, step)``: ``image`` is an H×W×3 **RGB** uint8 array (MMEngine's convention);
* ``add_scalar(name, value, step)`` / ``add_scalars(scalar_dict, step, file_path)``;
* ``add_config(config)``; ``close()``.

Backends create their folder and open files on first use, not when built: a run that never draws
leaves no empty ``vis_data`` folder behind.

Example::

    >>> import numpy as np, tempfile, os
    >>> d = tempfile.mkdtemp()
    >>> b = LocalVisBackend(save_dir=d)
    >>> b.add_image('demo', np.zeros((4, 4, 3), np.uint8), step=3)
    >>> sorted(os.listdir(os.path.join(d, 'vis_image')))
    ['demo_3.png']
"""

from __future__ import annotations

import json
import numbers
import os
from collections.abc import Mapping
from typing import Any

import numpy as np

from kiln.registry import VIS_BACKENDS
from kiln.utils.lazy import require

__all__ = [
    "BaseVisBackend",
    "LocalVisBackend",
    "TensorboardVisBackend",
    "WandbVisBackend",
    "MLflowVisBackend",
]


def _check_image(image: Any, who: str) -> np.ndarray:
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        got = (f"{type(image).__name__} {getattr(image, 'dtype', '')} {getattr(image, 'shape', '')}").strip()
        raise TypeError(f"{who}.add_image expects an H×W×3 RGB uint8 numpy array, got {got}.")
    return image


def _scalar(value: Any, name: str, who: str) -> float | int:
    if isinstance(value, (np.ndarray, np.generic)) or type(value).__name__ == "Tensor":
        if int(np.prod(getattr(value, "shape", ()))) == 1:  # 0-d or one element
            value = value.item()
    if isinstance(value, bool) or not isinstance(value, numbers.Number):
        raise TypeError(f"{who}.add_scalar('{name}'): expected a number (int, float, 0-d tensor or "
                        f"array), got {type(value).__name__} {value!r}.")
    return value


def _config_text(config: Any) -> str:
    """The config as Python source text (kiln/MMEngine ``Config`` or a plain dict)."""
    if hasattr(config, "dump"):
        text = config.dump()
        if isinstance(text, str):
            return text
    if isinstance(config, Mapping):
        from kiln.config import Config

        return Config(dict(config)).dump()
    raise TypeError(f"add_config expects a kiln Config or a dict, got {type(config).__name__}.")


class BaseVisBackend:
    """Base of the visualization backends: a ``save_dir`` and the five recording methods.

    Subclasses implement ``_init_env`` (create folders, open writers; run on first use) and the
    ``add_*`` methods they support. A method a backend cannot honour raises, naming the backend.

    Args:
        save_dir: where the backend writes (the visualizer passes ``<its save_dir>/vis_data``).
    """

    def __init__(self, save_dir: str | os.PathLike | None) -> None:
        self._save_dir = None if save_dir is None else os.fspath(save_dir)
        self._env_ready = False

    @property
    def save_dir(self) -> str | None:
        """The folder this backend writes to."""
        return self._save_dir

    def _ensure_env(self) -> None:
        if not self._env_ready:
            if self._save_dir is None:
                raise ValueError(
                    f"{type(self).__name__} has no save_dir: build it with save_dir=..., or give the "
                    "visualizer a save_dir (the runner passes its work_dir).")
            self._init_env()
            self._env_ready = True

    def _init_env(self) -> None:
        os.makedirs(self._save_dir, exist_ok=True)  # type: ignore[arg-type]

    @property
    def experiment(self) -> Any:
        """The object the backend writes through (MMEngine's ``experiment``): itself by default."""
        self._ensure_env()
        return self

    def add_config(self, config: Any, **kwargs: Any) -> None:
        """Record the run's config."""
        raise NotImplementedError(f"{type(self).__name__} does not record configs.")

    def add_image(self, name: str, image: np.ndarray, step: int = 0, **kwargs: Any) -> None:
        """Record an H×W×3 RGB uint8 image."""
        raise NotImplementedError(f"{type(self).__name__} does not record images.")

    def add_scalar(self, name: str, value: Any, step: int = 0, **kwargs: Any) -> None:
        """Record one scalar at ``step``."""
        raise NotImplementedError(f"{type(self).__name__} does not record scalars.")

    def add_scalars(self, scalar_dict: Mapping[str, Any], step: int = 0, file_path: str | None = None,
                    **kwargs: Any) -> None:
        """Record several scalars at ``step`` (default: one ``add_scalar`` each)."""
        if not isinstance(scalar_dict, Mapping):
            raise TypeError(f"{type(self).__name__}.add_scalars expects a dict, got "
                            f"{type(scalar_dict).__name__}.")
        if "step" in scalar_dict:
            raise ValueError(f"{type(self).__name__}.add_scalars: pass the step as step=..., not as a "
                             "'step' key of the dict.")
        for key, value in scalar_dict.items():
            self.add_scalar(key, value, step)

    def close(self) -> None:
        """Flush and release files (nothing to do by default)."""


@VIS_BACKENDS.register_module()
class LocalVisBackend(BaseVisBackend):
    """Writes to disk, as MMEngine's ``LocalVisBackend`` lays it out:

    * images to ``<save_dir>/<img_save_dir>/<name>_<step>.png``;
    * scalars as JSON lines to ``<save_dir>/<scalar_save_file>`` (``{"loss": 0.3, "step": 10}``);
    * the config to ``<save_dir>/<config_save_file>``.

    Args:
        save_dir: the backend's folder.
        img_save_dir: image subfolder.
        config_save_file: config file name (``.py``).
        scalar_save_file: scalars file name (``.json``, one JSON object per line).
    """

    def __init__(self, save_dir: str | os.PathLike | None, img_save_dir: str = "vis_image",
                 config_save_file: str = "config.py", scalar_save_file: str = "scalars.json") -> None:
        if not str(config_save_file).endswith(".py"):
            raise ValueError(f"LocalVisBackend(config_save_file={config_save_file!r}): the config is written "
                             "as Python source; use a name ending in .py.")
        if not str(scalar_save_file).endswith(".json"):
            raise ValueError(f"LocalVisBackend(scalar_save_file={scalar_save_file!r}): scalars are "
                             "written as JSON lines; use a name ending in .json.")
        super().__init__(save_dir)
        self._img_save_dir = img_save_dir
        self._config_save_file = config_save_file
        self._scalar_save_file = scalar_save_file

    def _path(self, name: str) -> str:
        return os.path.join(self._save_dir, name)  # type: ignore[arg-type]

    def add_config(self, config: Any, **kwargs: Any) -> None:
        """Write the config as Python source to ``config_save_file``."""
        self._ensure_env()
        with open(self._path(self._config_save_file), "w", encoding="utf-8") as f:
            f.write(_config_text(config))

    def add_image(self, name: str, image: np.ndarray, step: int = 0, **kwargs: Any) -> None:
        """Write ``<img_save_dir>/<name>_<step>.png`` (the RGB array is stored with true colours)."""
        from kiln.image.io import imwrite

        self._ensure_env()
        image = _check_image(image, type(self).__name__)
        path = os.path.join(self._path(self._img_save_dir), f"{name}_{step}.png")
        imwrite(image, path, channel_order="rgb")

    def add_scalar(self, name: str, value: Any, step: int = 0, **kwargs: Any) -> None:
        """Append ``{name: value, "step": step}`` to the scalars file."""
        self._ensure_env()
        self._append({name: _scalar(value, name, type(self).__name__), "step": step}, self._scalar_save_file)

    def add_scalars(self, scalar_dict: Mapping[str, Any], step: int = 0, file_path: str | None = None,
                    **kwargs: Any) -> None:
        """Append the dict (plus ``step`` unless it has one) as one line to the scalars file, and also
        to ``<save_dir>/<file_path>`` when given (MMEngine's extra per-call file)."""
        if not isinstance(scalar_dict, Mapping):
            raise TypeError(f"LocalVisBackend.add_scalars expects a dict, got {type(scalar_dict).__name__}.")
        self._ensure_env()
        record = {k: _scalar(v, k, "LocalVisBackend") if k != "step" else v for k, v in scalar_dict.items()}
        record.setdefault("step", step)
        if file_path is not None:
            if not str(file_path).endswith(".json"):
                raise ValueError(f"LocalVisBackend.add_scalars(file_path={file_path!r}): use a .json name.")
            if os.path.normpath(file_path) == os.path.normpath(self._scalar_save_file):
                raise ValueError(f"LocalVisBackend.add_scalars: file_path {file_path!r} is the scalars file "
                                 "itself; choose another name.")
            self._append(record, file_path)
        self._append(record, self._scalar_save_file)

    def _append(self, record: dict, name: str) -> None:
        with open(self._path(name), "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")


@VIS_BACKENDS.register_module()
class TensorboardVisBackend(BaseVisBackend):
    """Writes TensorBoard event files into ``save_dir`` (images, scalars, the config as text).

    ``torch.utils.tensorboard`` is imported on first use (it needs the ``tensorboard`` package).
    """

    def __init__(self, save_dir: str | os.PathLike | None) -> None:
        super().__init__(save_dir)
        self._writer: Any = None

    def _init_env(self) -> None:
        tb = require("torch.utils.tensorboard", "TensorboardVisBackend (pip install tensorboard)")
        super()._init_env()
        self._writer = tb.SummaryWriter(self._save_dir)

    @property
    def experiment(self) -> Any:
        """The ``SummaryWriter``."""
        self._ensure_env()
        return self._writer

    def add_config(self, config: Any, **kwargs: Any) -> None:
        """The config source as the text summary ``config``."""
        self._ensure_env()
        self._writer.add_text("config", _config_text(config))

    def add_image(self, name: str, image: np.ndarray, step: int = 0, **kwargs: Any) -> None:
        """The RGB image under tag ``name`` at ``step``."""
        self._ensure_env()
        self._writer.add_image(name, _check_image(image, type(self).__name__), step, dataformats="HWC")
        self._writer.flush()

    def add_scalar(self, name: str, value: Any, step: int = 0, **kwargs: Any) -> None:
        """One scalar under tag ``name`` at ``step``."""
        self._ensure_env()
        self._writer.add_scalar(name, _scalar(value, name, type(self).__name__), step)

    def add_scalars(self, scalar_dict: Mapping[str, Any], step: int = 0, file_path: str | None = None,
                    **kwargs: Any) -> None:
        """Each scalar under its own tag (``file_path`` is for LocalVisBackend; TensorBoard has no files
        per call, so it is not used here, as in MMEngine)."""
        super().add_scalars(scalar_dict, step)
        self._writer.flush()

    def close(self) -> None:
        """Flush and close the event file (a later ``add_*`` opens a new one)."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None
            self._env_ready = False


@VIS_BACKENDS.register_module()
class WandbVisBackend(BaseVisBackend):
    """Logs images, scalars and the config to Weights & Biases (``pip install wandb``).

    As in MMEngine, ``step`` is not passed on: W&B keeps its own step counter and drops rows logged
    at a step lower than one already logged, which validation images (drawn at ``runner.iter +
    batch_idx``) would otherwise hit. Each ``add_*`` call is one ``wandb.log(..., commit=commit)``.

    Args:
        save_dir: W&B's ``dir`` (unless ``init_kwargs`` gives one).
        init_kwargs: ``wandb.init`` arguments (``project``, ``name``, ``mode='offline'``, ...).
        define_metric_cfg: ``{metric: summary}`` or a list of ``wandb.define_metric`` keyword dicts.
        commit: ``wandb.log``'s ``commit``.
        log_code_name: the name of the code artifact ``add_config`` saves (``run.log_code``).
        watch_kwargs: MMEngine passes these to ``wandb.watch`` from ``add_graph``, which kiln's
            runner never calls; anything but ``None`` is refused.
    """

    def __init__(self, save_dir: str | os.PathLike | None, init_kwargs: Mapping[str, Any] | None = None,
                 define_metric_cfg: Mapping[str, str] | list[Mapping[str, Any]] | None = None,
                 commit: bool = True, log_code_name: str | None = None,
                 watch_kwargs: Mapping[str, Any] | None = None) -> None:
        if watch_kwargs is not None:
            raise ValueError(f"WandbVisBackend(watch_kwargs={watch_kwargs!r}): kiln's runner never records "
                             "the model graph (add_graph): nothing to watch; remove watch_kwargs.")
        if define_metric_cfg is not None and not isinstance(define_metric_cfg, (Mapping, list)):
            raise TypeError("WandbVisBackend(define_metric_cfg=...): expected {metric: summary} or a list of "
                            f"wandb.define_metric keyword dicts, got {type(define_metric_cfg).__name__}.")
        super().__init__(save_dir)
        self._init_kwargs = dict(init_kwargs or {})
        self._define_metric_cfg = define_metric_cfg
        self._commit = bool(commit)
        self._log_code_name = log_code_name
        self._wandb: Any = None
        self._run: Any = None

    def _init_env(self) -> None:
        self._wandb = require("wandb", "WandbVisBackend")
        super()._init_env()
        kwargs = dict(self._init_kwargs)
        kwargs.setdefault("dir", self._save_dir)
        self._run = self._wandb.init(**kwargs)
        if isinstance(self._define_metric_cfg, Mapping):
            for metric, summary in self._define_metric_cfg.items():
                self._run.define_metric(metric, summary=summary)
        elif self._define_metric_cfg is not None:
            for metric_cfg in self._define_metric_cfg:
                self._run.define_metric(**metric_cfg)

    @property
    def experiment(self) -> Any:
        """The ``wandb`` run."""
        self._ensure_env()
        return self._run

    def add_config(self, config: Any, **kwargs: Any) -> None:
        """The config dict as the run's config, and the code as an artifact (``run.log_code``)."""
        self._ensure_env()
        data = config.to_dict() if hasattr(config, "to_dict") else dict(config)
        self._run.config.update(data, allow_val_change=bool(self._init_kwargs.get("allow_val_change", False)))
        self._run.log_code(name=self._log_code_name)

    def add_image(self, name: str, image: np.ndarray, step: int = 0, **kwargs: Any) -> None:
        """The RGB image as ``wandb.Image`` under ``name`` (``step``: W&B counts its own)."""
        self._ensure_env()
        image = _check_image(image, type(self).__name__)
        self._run.log({name: self._wandb.Image(image)}, commit=self._commit)

    def add_scalar(self, name: str, value: Any, step: int = 0, **kwargs: Any) -> None:
        """One scalar (``step``: W&B counts its own)."""
        self._ensure_env()
        self._run.log({name: _scalar(value, name, type(self).__name__)}, commit=self._commit)

    def add_scalars(self, scalar_dict: Mapping[str, Any], step: int = 0, file_path: str | None = None,
                    **kwargs: Any) -> None:
        """All scalars in one ``wandb.log`` row."""
        if not isinstance(scalar_dict, Mapping):
            raise TypeError(f"WandbVisBackend.add_scalars expects a dict, got {type(scalar_dict).__name__}.")
        self._ensure_env()
        row = {k: _scalar(v, k, type(self).__name__) for k, v in scalar_dict.items() if k != "step"}
        self._run.log(row, commit=self._commit)

    def close(self) -> None:
        """Finish the run (a later ``add_*`` starts a new one)."""
        if self._run is not None:
            self._run.finish()
            self._run = None
            self._env_ready = False


@VIS_BACKENDS.register_module()
class MLflowVisBackend(BaseVisBackend):
    """Logs scalars, images (as artifacts) and the config (as params) to MLflow.

    Needs ``mlflow`` (``pip install mlflow-skinny`` is enough). Without ``tracking_uri`` the store is
    local: ``file:<save_dir>/mlruns``. Talks to its own run through an ``MlflowClient`` (the process's
    active MLflow run, if any, is left alone).

    Args:
        save_dir: where the local store goes.
        exp_name: experiment name (default ``'kiln'``), created if missing.
        run_name: the run's name.
        tags: run tags.
        params: hyper-parameters logged once at start.
        tracking_uri: an MLflow tracking URI.
        artifact_suffix: MMEngine uploads the work_dir's files with these suffixes at close; kiln
            does not, and refuses anything but the default.
    """

    _DEFAULT_SUFFIX = (".json", ".log", ".py", "yaml")

    def __init__(self, save_dir: str | os.PathLike | None, exp_name: str | None = None,
                 run_name: str | None = None, tags: Mapping[str, Any] | None = None,
                 params: Mapping[str, Any] | None = None, tracking_uri: str | None = None,
                 artifact_suffix: Any = _DEFAULT_SUFFIX) -> None:
        if tuple(artifact_suffix) != self._DEFAULT_SUFFIX:
            raise ValueError(f"MLflowVisBackend(artifact_suffix={artifact_suffix!r}): kiln does not upload "
                             "work_dir files as artifacts; remove artifact_suffix.")
        super().__init__(save_dir)
        self._exp_name = exp_name or "kiln"
        self._run_name = run_name
        self._tags = {k: str(v) for k, v in (tags or {}).items()}
        self._params = dict(params or {})
        self._tracking_uri = tracking_uri
        self._client: Any = None
        self._run_id: str | None = None

    def _init_env(self) -> None:
        mlflow = require("mlflow", "MLflowVisBackend (pip install mlflow-skinny)")
        super()._init_env()
        uri = self._tracking_uri or "file:" + os.path.abspath(os.path.join(self._save_dir, "mlruns"))
        if uri.startswith("file:"):
            # MLflow >= 3.13 refuses file stores unless the user opts in; choosing one here is that choice.
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        self._client = mlflow.MlflowClient(tracking_uri=uri)
        exp = self._client.get_experiment_by_name(self._exp_name)
        exp_id = exp.experiment_id if exp is not None else self._client.create_experiment(self._exp_name)
        self._run_id = self._client.create_run(exp_id, run_name=self._run_name, tags=self._tags).info.run_id
        for key, value in self._params.items():
            self._client.log_param(self._run_id, key, str(value))

    @property
    def experiment(self) -> Any:
        """The ``MlflowClient`` (the run is ``backend.run_id``)."""
        self._ensure_env()
        return self._client

    @property
    def run_id(self) -> str | None:
        """The MLflow run id (``None`` before first use)."""
        return self._run_id

    def add_config(self, config: Any, **kwargs: Any) -> None:
        """The config's source text as the artifact ``config.py``."""
        self._ensure_env()
        self._client.log_text(self._run_id, _config_text(config), "config.py")

    def add_image(self, name: str, image: np.ndarray, step: int = 0, **kwargs: Any) -> None:
        """The RGB image as the artifact ``<name>_<step>.png``."""
        self._ensure_env()
        self._client.log_image(self._run_id, _check_image(image, type(self).__name__), f"{name}_{step}.png")

    def add_scalar(self, name: str, value: Any, step: int = 0, **kwargs: Any) -> None:
        """One metric at ``step``."""
        self._ensure_env()
        self._client.log_metric(self._run_id, name, float(_scalar(value, name, type(self).__name__)),
                                step=int(step))

    def close(self) -> None:
        """Mark the run finished (a later ``add_*`` starts a new run)."""
        if self._run_id is not None:
            self._client.set_terminated(self._run_id)
            self._env_ready = False
