"""``NumClassCheckHook``: MMDetection 2.x's check that every head's ``num_classes`` fits the dataset."""

from __future__ import annotations

from typing import Any

from kiln.registry import HOOKS

from .base import Hook, Priority

__all__ = ["NumClassCheckHook"]


def _loader(runner: Any, attr: str) -> Any:
    # The MMCV-style runner keeps the loader of the running phase in `data_loader`.
    current = getattr(runner, "data_loader", None)
    return current if current is not None else getattr(runner, attr, None)


@HOOKS.register_module()
class NumClassCheckHook(Hook):
    """Raise before a training or validation epoch if a head's ``num_classes`` differs from the number
    of classes of the epoch's dataset (class-agnostic RPN heads are not compared).

    Listed in MMDetection 2.x's ``default_runtime.py`` (``custom_hooks=[dict(type='NumClassCheckHook')]``).
    kiln's runner builder runs the same check by default in every dialect
    (:func:`kiln.models.num_classes.check_model_dataset_classes`); the hook repeats it per epoch.
    """

    priority = Priority.VERY_HIGH

    def _check(self, runner: Any, phase: str) -> None:
        from kiln.models.num_classes import check_model_dataset_classes

        loader = _loader(runner, f"{phase}_dataloader")
        dataset = getattr(loader, "dataset", None)
        if dataset is None:
            return  # no dataset behind this phase (e.g. a plain iterable of batches): nothing to compare
        model = getattr(runner, "unwrapped_model", None)
        model = runner.model if model is None else model
        # MMCV-style runners (2.x configs) read data.train / data.val; MMEngine-style ones *_dataloader.
        where = f"data.{phase}" if hasattr(runner, "data_loader") else f"{phase}_dataloader.dataset"
        check_model_dataset_classes(model, dataset, where=where)

    def before_train_epoch(self, runner: Any) -> None:
        """Check the training dataset."""
        self._check(runner, "train")

    def before_val_epoch(self, runner: Any) -> None:
        """Check the validation dataset."""
        self._check(runner, "val")
