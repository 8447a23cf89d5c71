"""Seeds and random number generators.

Every seed a stage uses is derived from the run's master seed by :func:`derive_seeds`, keyed by what the seed
is for; the formulas are fixed (changing one changes every table computed with it). Per-sample generators:
sample k depends only on its seed, whatever the batch. torch is imported only by the generator helpers, so the
seed helpers also serve rules whose environment has no torch (the linear probes).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

import numpy as np

if TYPE_CHECKING:
    import torch

#: purpose -> (seed, index, k) -> derived seed of item k (index: the grid point or model it belongs to).
_FORMULAS = {
    # sampled images of one model (sample_images) and base trajectories of the forking measurement
    "sample": lambda seed, index, k: seed * 1_000_003 + k,
    # fork k of all forks started at grid point ``index``
    "fork": lambda seed, index, k: (seed + 1) * 7_919_993 + index * 100_003 + k,
    # the noise added to every image at grid point ``index`` (extract_features)
    "feature_noise": lambda seed, index, k: seed * 1000 + index,
    # training run of score model ``index`` (0: unconditional, 1: conditional)
    "score_model": lambda seed, index, k: seed + index,
}


def derive_seeds(seed: int, purpose: str, n: int = 1, index: int = 0) -> np.ndarray:
    """``n`` int64 seeds for ``purpose`` (a key of the table above) derived from the master ``seed``."""
    try:
        formula = _FORMULAS[purpose]
    except KeyError:
        raise ValueError(f"unknown seed purpose {purpose!r}; known: {sorted(_FORMULAS)}") from None
    k = np.arange(n, dtype=np.int64)
    return (formula(np.int64(seed), np.int64(index), k) + np.zeros_like(k)).astype(np.int64)


def derive_seed(seed: int, purpose: str, index: int = 0) -> int:
    """The first seed of :func:`derive_seeds`, as a Python int."""
    return int(derive_seeds(seed, purpose, 1, index)[0])


def rank_step_seed(seed: int, rank: int, step: int) -> int:
    """Seed of one rank's own random stream at one optimiser step of a data-parallel training run.

    Everything a training batch is made of (image indices, label dropout, noise levels, noise) comes from one
    stream seeded by ``seed`` that every rank draws in full, each keeping its slice. Only what a rank draws for
    its own slice alone (the network's dropout masks, from torch's global generator) needs a stream per rank:
    reseeded from (seed, rank, step) before every step, so a run stopped at any step and resumed on the same
    number of ranks redraws the same masks. ``numpy.random.SeedSequence`` mixes the three keys, so neighbouring
    (rank, step) pairs get unrelated seeds.
    """
    return int(np.random.SeedSequence([int(seed), int(rank), int(step)]).generate_state(1, np.uint64)[0])


def seeded_subset(indices: np.ndarray, n: int, seed: int) -> np.ndarray:
    """``n`` of ``indices`` (all of them if fewer) drawn without replacement by ``default_rng(seed)``, sorted."""
    return np.sort(np.random.default_rng(seed).choice(indices, size=min(n, len(indices)), replace=False))


def numpy_rng(seed: int, *keys: int) -> np.random.Generator:
    """A NumPy generator for one cell of a table (e.g. the bootstrap of one tau and factor): seeded by (seed, *keys)."""
    return np.random.default_rng([int(seed), *map(int, keys)])


def make_generators(seeds: Sequence[int], device: torch.device | str = "cpu") -> list[torch.Generator]:
    """One ``torch.Generator`` per sample, seeded with ``seeds[k]``, on ``device``."""
    import torch

    return [torch.Generator(device=device).manual_seed(int(s)) for s in seeds]


def randn_per_sample(
    shape: tuple[int, ...], generators: Sequence[torch.Generator], device: torch.device | str = "cpu"
) -> torch.Tensor:
    """Standard normal (B, *shape[1:]) with row k drawn from ``generators[k]``."""
    import torch

    if shape[0] != len(generators):
        raise ValueError(f"batch of {shape[0]} but {len(generators)} generators")
    return torch.stack([torch.randn(shape[1:], generator=g, device=device) for g in generators])


def randn_like_per_sample(x: torch.Tensor, generators: Sequence[torch.Generator]) -> torch.Tensor:
    """Like ``torch.randn_like(x)`` with row k from ``generators[k]``."""
    return randn_per_sample(tuple(x.shape), generators, x.device).to(x.dtype)
