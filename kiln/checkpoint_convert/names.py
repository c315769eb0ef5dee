"""Small helpers on state-dict key names."""

from __future__ import annotations

import collections
from collections.abc import Iterable

__all__ = ["group_keys"]


def group_keys(keys: Iterable[str]) -> list[str]:
    """``['a.b.w', 'a.b.bias', 'c']`` -> ``['a.b.{bias,w}', 'c']`` so long key lists stay readable."""
    groups: dict[str, list[str]] = collections.defaultdict(list)
    for k in keys:
        head, _, leaf = k.rpartition(".")
        groups[head].append(leaf)
    out = []
    for head, leaves in groups.items():
        leaves = sorted(leaves)
        body = leaves[0] if len(leaves) == 1 else "{" + ",".join(leaves) + "}"
        out.append(f"{head}.{body}" if head else body)
    return sorted(out)
