"""Matching converted checkpoint names to a model's names, and the report of what loaded.

After renaming, a checkpoint's keys may still sit under a different prefix than the model's: ImageNet
weights (``layer1.0.conv1.weight``) go into a detector's ``backbone.``; in a C4 detector their ``layer4``
belongs to ``roi_head.shared_head.``; a whole-detector checkpoint loaded into a bare backbone has a
``backbone.`` too many. Like Detectron2's matching heuristics, :func:`align_state_dict` matches by
complete dotted suffixes, but picks one prefix at a time for many keys at once (the prefix matching most
keys of equal shape first), so ``conv1.weight`` (the stem) never lands on ``layer1.0.conv1.weight``.
"""

from __future__ import annotations

import collections
import dataclasses
from collections.abc import Mapping
from typing import Any

__all__ = ["LoadReport", "align_state_dict"]


def _shape(v: Any) -> tuple[int, ...] | None:
    shape = getattr(v, "shape", None)
    return tuple(shape) if shape is not None else None


@dataclasses.dataclass
class LoadReport:
    """What a checkpoint load did: the layout found, renames, and every key that did not load and why."""

    source: str
    layout: str
    num_model_keys: int
    loaded: list[str]
    renamed: dict[str, str]  # model key -> checkpoint key it came from (after layout conversion)
    missing: list[str]
    unexpected: list[str]
    shape_mismatch: list[tuple[str, tuple[int, ...], tuple[int, ...]]]
    notes: list[str] = dataclasses.field(default_factory=list)

    @property
    def clean(self) -> bool:
        """True when every model key loaded from a key of the same name (nothing to tell the user)."""
        return not (self.missing or self.unexpected or self.shape_mismatch or self.renamed or self.notes
                    or self.layout != "kiln")

    def summary_line(self) -> str:
        """One line: how much loaded; it says so plainly when nothing or almost nothing matched."""
        n, total = len(self.loaded), self.num_model_keys
        head = f"Loaded {self.source} (layout: {self.layout}): {n} of {total} model tensors"
        if total and n == 0:
            return (f"{head}. NOTHING matched: this checkpoint does not belong to this model "
                    f"(checkpoint keys look like {self.unexpected[:3]}, model keys like {self.missing[:3]}).")
        if total and n < 0.1 * total:
            return f"{head}. Almost nothing matched: is this the checkpoint of this model?"
        return head + "."

    def format(self) -> str:
        """The summary line, the conversion notes and one table: loaded (by module), skipped and why."""
        from .names import group_keys

        rows: list[tuple[str, str, str]] = []
        by_module: dict[str, int] = collections.Counter(".".join(k.split(".")[:1]) for k in self.loaded)
        renamed_modules = {".".join(k.split(".")[:1]) for k in self.renamed}
        for module, count in sorted(by_module.items()):
            how = [f"renamed from {self.layout} names"] if self.layout != "kiln" else []
            if module in renamed_modules:
                how.append("matched by prefix")
            rows.append(("loaded", module, f"{count} tensors ({', '.join(how) or 'same names'})"))
        for key, ckpt_shape, model_shape in self.shape_mismatch:
            rows.append(("shape mismatch (skipped)", key, f"checkpoint {ckpt_shape} vs model {model_shape}"))
        for key in group_keys(self.missing):
            rows.append(("missing in checkpoint", key, "keeps its initial value"))
        for key in group_keys(self.unexpected):
            rows.append(("not in model", key, "ignored"))
        lines = [self.summary_line()]
        lines += [f"  note: {n}" for n in self.notes]
        if rows:
            w0 = max(len(r[0]) for r in rows)
            w1 = max(len(r[1]) for r in rows)
            lines += [f"  {a:<{w0}}  {b:<{w1}}  {c}" for a, b, c in rows]
        return "\n".join(lines)


def align_state_dict(
    state: Mapping[str, Any], model_state: Mapping[str, Any]
) -> tuple[dict[str, Any], dict[str, str], list[str], list[tuple[str, tuple[int, ...], tuple[int, ...]]]]:
    """Map checkpoint keys onto ``model_state``'s keys.

    Returns:
        ``(aligned, renamed, unexpected, shape_mismatch)``: ``aligned`` maps model keys to values of equal
        shape; ``renamed`` model key -> checkpoint key where they differ; ``unexpected`` checkpoint keys
        nothing used; ``shape_mismatch`` ``(model key, checkpoint shape, model shape)``.
    """
    def same_shape(c: str, m: str) -> bool:
        return _shape(state[c]) == _shape(model_state[m])

    matched: dict[str, str] = {}
    mismatch: list[tuple[str, tuple[int, ...], tuple[int, ...]]] = []
    mismatched_ckpt: set[str] = set()
    for c in state:
        if c in model_state:
            if same_shape(c, c):
                matched[c] = c
            else:
                mismatch.append((c, _shape(state[c]) or (), _shape(model_state[c]) or ()))
                mismatched_ckpt.add(c)
    used = set(matched.values()) | mismatched_ckpt
    free_ckpt = [c for c in state if c not in used]
    taken = set(matched) | {m for m, _, _ in mismatch}
    free_model = [m for m in model_state if m not in taken]
    # kiln's ConvModule names its norm 'bn' or 'gn' after the type; foreign layouts just say norm.
    for c in list(free_ckpt):
        alt = c.replace(".bn.", ".gn.")
        if alt != c and alt in free_model and same_shape(c, alt):
            matched[alt] = c
            free_ckpt.remove(c)
            free_model.remove(alt)
    while free_ckpt and free_model:
        counts: collections.Counter = collections.Counter()
        for c in free_ckpt:
            for m in free_model:
                if m.endswith("." + c) and same_shape(c, m):
                    counts[("add", m[: len(m) - len(c)])] += 1
                elif c.endswith("." + m) and same_shape(c, m):
                    counts[("strip", c[: len(c) - len(m)])] += 1
        if not counts:
            break
        (op, prefix), _ = counts.most_common(1)[0]
        free_model_set = set(free_model)
        progressed = False
        for c in list(free_ckpt):
            if op == "add":
                m = prefix + c
            elif c.startswith(prefix):
                m = c[len(prefix):]
            else:
                continue
            if m not in free_model_set:
                continue
            if same_shape(c, m):
                matched[m] = c
            else:
                mismatch.append((m, _shape(state[c]) or (), _shape(model_state[m]) or ()))
            free_ckpt.remove(c)
            free_model_set.discard(m)
            progressed = True
        free_model = [m for m in free_model if m in free_model_set]
        if not progressed:
            break
    aligned = {m: state[c] for m, c in matched.items()}
    renamed = {m: c for m, c in matched.items() if m != c}
    return aligned, renamed, free_ckpt, mismatch
