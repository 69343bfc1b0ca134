"""Seeds of a training run's random draws: each a pure function of the run's seed and a key.

No draw touches a global generator (the adapters' initialisation forks and restores torch's), so
a run resumed at step ``k`` draws exactly what an uninterrupted run draws from step ``k`` on.
"""

from __future__ import annotations

import numpy as np

__all__ = ["ADAPTER_INIT", "EXAMPLE_ORDER", "HELD_OUT", "NOISE", "VALIDATION_SPLIT", "seed_for"]

#: First key of the per-epoch permutations of the examples (then the epoch number).
EXAMPLE_ORDER = 0
#: Key of the adapters' Gaussian initialisation.
ADAPTER_INIT = 1
#: First key of the noise and timesteps (then the step and the micro-batch number).
NOISE = 2
#: Key of the choice of held-out examples (``validation_split``).
VALIDATION_SPLIT = 3
#: First key of each held-out example's fixed noise and timestep (then its index).
HELD_OUT = 4


def seed_for(seed: int, *keys: int) -> int:
    """A seed for ``torch.Generator.manual_seed`` that depends on ``seed`` and ``keys`` only.

    Args:
        seed: the run's seed (a non-negative int).
        keys: the stream (:data:`EXAMPLE_ORDER`, :data:`ADAPTER_INIT`, :data:`NOISE`) and its
            indices (non-negative ints).

    Returns:
        An int in ``[0, 2**63)``.
    """
    return int(np.random.SeedSequence([seed, *keys]).generate_state(2, dtype=np.uint64)[0] >> 1)
