"""RNG state capture/restore for exact resume, in a form that loads with ``weights_only=True``.

Python's and numpy's 624-word states are stored as int64 tensors (one pickled object each instead of
~1,250 ints: a checkpoint save is ~1 ms cheaper), the rest as plain ints/floats, torch's as uint8 tensors.
Lists (what older checkpoints hold) load too.
"""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch

from . import comm

__all__ = ["get_rng_states", "set_rng_states", "collect_rng_states_all_ranks"]


def get_rng_states() -> dict[str, Any]:
    """This process's python, numpy, torch CPU and (if available) CUDA RNG states."""
    version, internal, gauss_next = random.getstate()
    np_state = np.random.get_state(legacy=False)
    states: dict[str, Any] = {
        "python": {
            "version": int(version),
            "state": torch.tensor(internal, dtype=torch.int64),
            "gauss_next": gauss_next,
        },
        "numpy": {
            "bit_generator": str(np_state["bit_generator"]),
            "key": torch.from_numpy(np_state["state"]["key"].astype(np.int64)),
            "pos": int(np_state["state"]["pos"]),
            "has_gauss": int(np_state["has_gauss"]),
            "gauss": float(np_state["gauss"]),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def set_rng_states(states: dict[str, Any]) -> None:
    """Restore states captured by :func:`get_rng_states` (CUDA only if present and available)."""
    missing = {"python", "numpy", "torch"} - set(states)
    if missing:
        raise KeyError(
            f"set_rng_states: the state has no {sorted(missing)} entries; expected what get_rng_states() "
            f"returns (keys python, numpy, torch[, cuda])."
        )
    py = states["python"]
    random.setstate((py["version"], tuple(_ints(py["state"])), py["gauss_next"]))
    n = states["numpy"]
    np.random.set_state({
        "bit_generator": n["bit_generator"],
        "state": {"key": np.asarray(_ints(n["key"]), dtype=np.uint32), "pos": int(n["pos"])},
        "has_gauss": int(n["has_gauss"]),
        "gauss": float(n["gauss"]),
    })
    torch.set_rng_state(torch.as_tensor(states["torch"], dtype=torch.uint8))
    if "cuda" in states and torch.cuda.is_available():
        cuda_states = list(states["cuda"])
        if len(cuda_states) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda_states)
        else:
            # Resuming on a different GPU count: restore what overlaps, leave the rest seeded.
            for i, s in enumerate(cuda_states[: torch.cuda.device_count()]):
                torch.cuda.set_rng_state(s, i)


def _ints(words: Any) -> list[int]:
    """A saved state word list: a tensor (current format) or a list of ints (older checkpoints)."""
    return words.tolist() if isinstance(words, torch.Tensor) else [int(w) for w in words]


def collect_rng_states_all_ranks() -> dict[str, dict[str, Any]]:
    """``{'rng_state_rank{r}': states}`` for every rank (collective: all ranks must call it).

    The main process stores the result in the checkpoint; on resume each rank restores its own entry.
    """
    states = comm.all_gather(get_rng_states())
    return {f"rng_state_rank{r}": s for r, s in enumerate(states)}
