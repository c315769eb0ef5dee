"""RNG states across ranks for checkpoints; the RNG functions themselves live in :mod:`kiln.utils.rng`."""

from __future__ import annotations

from typing import Any

from kiln.utils.rng import forked_rng, get_rng_states, set_random_seed, set_rng_states

from . import comm

__all__ = [
    "get_rng_states",
    "set_rng_states",
    "forked_rng",
    "set_random_seed",
    "collect_rng_states_all_ranks",
]


def collect_rng_states_all_ranks() -> dict[str, dict[str, Any]]:
    """``{'rng_state_rank{r}': states}`` for every rank (collective: all ranks must call it).

    The main process stores the result in the checkpoint; on resume each rank restores its own entry.
    """
    states = comm.all_gather(get_rng_states())
    return {f"rng_state_rank{r}": s for r, s in enumerate(states)}
