"""The evaluator interface and a container that runs several evaluators as one.

An evaluator sees the model's predictions batch by batch (``process``) and turns them into
metrics at the end (``evaluate``). It never runs the model itself: that is
:func:`kiln.evaluation.inference_on_dataset`'s job, so one evaluator works for validation
during training, ``kiln test`` and notebooks alike.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from kiln.registry import EVALUATORS

__all__ = ["DatasetEvaluator", "DatasetEvaluators"]


class DatasetEvaluator:
    """Base class of evaluators: accumulate predictions, then compute metrics.

    Subclasses override :meth:`reset`, :meth:`process` and :meth:`evaluate`. The contract
    (docs/architecture.md, "Evaluators"):

    * ``process(inputs, outputs)``: ``inputs`` is a batch (a list of per-image dicts, either
      the MM pipeline form or the Detectron2 mapper form), ``outputs`` the model's eval-mode
      result for that batch (one dict per image with ``boxes``/``scores``/``labels``).
    * ``evaluate()`` returns a flat ``dict[str, float]`` such as ``{'bbox/AP': 41.2}``. In a
      distributed run it gathers the other ranks' predictions itself; non-main ranks may
      return an empty dict.

    Example::

        >>> class CountImages(DatasetEvaluator):
        ...     def reset(self):
        ...         self.n = 0
        ...     def process(self, inputs, outputs):
        ...         self.n += len(outputs)
        ...     def evaluate(self):
        ...         return {'count/images': float(self.n)}
    """

    def reset(self) -> None:
        """Forget everything seen so far; called before each evaluation run."""

    def process(self, inputs: Sequence[Any], outputs: Sequence[Any]) -> None:
        """Record one batch of inputs and the model's outputs for it."""

    def evaluate(self) -> dict[str, float]:
        """Return the metrics over everything processed since the last :meth:`reset`."""
        return {}


@EVALUATORS.register_module()
class DatasetEvaluators(DatasetEvaluator):
    """Run several evaluators side by side and merge their results into one dict.

    Args:
        evaluators: evaluator objects, or config dicts built through ``EVALUATORS``.

    Two evaluators reporting the same key is an error (one result would silently hide the
    other): give them distinct prefixes.
    """

    def __init__(self, evaluators: Iterable[DatasetEvaluator | dict]) -> None:
        built = []
        for i, ev in enumerate(evaluators):
            if isinstance(ev, dict):
                ev = EVALUATORS.build(ev, cfg_path=f"evaluators.{i}")
            if not isinstance(ev, DatasetEvaluator):
                raise TypeError(
                    f"DatasetEvaluators: item {i} is a {type(ev).__name__}, expected a "
                    f"DatasetEvaluator (or a config dict with a registered 'type')."
                )
            built.append(ev)
        self._evaluators = built

    @property
    def evaluators(self) -> list[DatasetEvaluator]:
        """The wrapped evaluators, in order."""
        return list(self._evaluators)

    def __len__(self) -> int:
        return len(self._evaluators)

    def reset(self) -> None:
        """Reset every wrapped evaluator."""
        for ev in self._evaluators:
            ev.reset()

    def process(self, inputs: Sequence[Any], outputs: Sequence[Any]) -> None:
        """Pass the batch to every wrapped evaluator."""
        for ev in self._evaluators:
            ev.process(inputs, outputs)

    def evaluate(self) -> dict[str, float]:
        """Merge the wrapped evaluators' results; duplicate keys raise ``KeyError``."""
        results: dict[str, float] = {}
        owner: dict[str, str] = {}
        for ev in self._evaluators:
            for key, value in (ev.evaluate() or {}).items():
                if key in results:
                    raise KeyError(
                        f"DatasetEvaluators: metric '{key}' is reported by both "
                        f"{owner[key]} and {type(ev).__name__}; give one of them another "
                        f"prefix so neither result hides the other."
                    )
                results[key] = value
                owner[key] = type(ev).__name__
        return results
