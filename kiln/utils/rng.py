"""Random number generators: seeding, saving and restoring them, in one module.

* :func:`set_random_seed` seeds python, numpy and torch (the run seed); :func:`seed_cpu_rngs` seeds
  python, numpy and torch's CPU generator only (per-sample seeding in data loaders: seeding every
  accelerator would cost ~1 ms a call).
* :func:`preserved_rngs` restores python, numpy and torch's CPU generator on exit (cheap raw states,
  for hot paths); :func:`forked_rng` also CUDA's, through the checkpoint format.
* :func:`get_rng_states` / :func:`set_rng_states`: every state in a form that loads with
  ``weights_only=True`` (python's and numpy's 624-word states as int64 tensors: one pickled object
  each instead of ~1,250 ints; torch's as uint8 tensors; lists from older checkpoints load too).
  ``kiln.engine.rng.collect_rng_states_all_ranks`` gathers them across ranks for a checkpoint.

torch and numpy are imported inside the functions (``import kiln.utils`` stays cheap).
"""

from __future__ import annotations

import contextlib
import os
import random
from collections.abc import Iterator
from typing import Any

__all__ = [
    "set_random_seed",
    "seed_cpu_rngs",
    "preserved_rngs",
    "forked_rng",
    "get_rng_states",
    "set_rng_states",
]


def set_random_seed(seed: int | None = None, deterministic: bool = False) -> int:
    """Seed python ``random``, numpy and torch (CPU and all CUDA devices).

    Args:
        seed: the seed; ``None`` draws one from ``os.urandom`` (returned so it can be logged).
        deterministic: also ask torch for deterministic algorithms (slower, bit-stable across runs).

    Returns:
        The seed used.
    """
    import numpy as np
    import torch

    if seed is None:
        seed = int.from_bytes(os.urandom(4), "little") & 0x7FFFFFFF
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False
    return seed


def seed_cpu_rngs(seed: int) -> None:
    """Seed python ``random``, numpy's global RNG and torch's CPU generator (not the accelerators)."""
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.default_generator.manual_seed(seed)


@contextlib.contextmanager
def preserved_rngs() -> Iterator[None]:
    """Restore python ``random``, numpy's global RNG and torch's CPU generator on exit."""
    import numpy as np
    import torch

    py_state = random.getstate()
    np_state = np.random.get_state()
    torch_state = torch.default_generator.get_state()
    try:
        yield
    finally:
        random.setstate(py_state)
        np.random.set_state(np_state)
        torch.default_generator.set_state(torch_state)


@contextlib.contextmanager
def forked_rng() -> Iterator[None]:
    """Save the python, numpy, torch CPU and (initialized) CUDA RNG states; restore them on exit."""
    states = get_rng_states()
    try:
        yield
    finally:
        set_rng_states(states)


def get_rng_states() -> dict[str, Any]:
    """This process's python, numpy, torch CPU and (if initialized) CUDA RNG states, checkpoint-ready."""
    import numpy as np
    import torch

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
    import numpy as np
    import torch

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
    import torch

    return words.tolist() if isinstance(words, torch.Tensor) else [int(w) for w in words]
