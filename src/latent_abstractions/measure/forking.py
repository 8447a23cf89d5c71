"""Forking: when along the generative path is each factor committed?

N base trajectories start from the prior (tau = 0, noise). At each tau of the grid, K forks continue from the
base's state at tau with fresh noise to tau = 1 (data); the attribute classifier labels every fork's final
image. Per factor, the entropy of the K fork labels, normalised by log(levels present), measures how undecided
the factor still is at tau: 1 = every level equally likely, 0 = all forks agree. Averaged over base
trajectories, with a percentile bootstrap CI over them.

Forks run WITHOUT the Langevin corrector by default (``corrector=False``: the reverse-diffusion predictor
alone): with the exact score the predictor's end point follows p(phi | Y_tau), while one corrector step per
grid point (snr 0.16) does not preserve that law (measured on the default 24x24 grid: TV up to 0.17 at 200
steps, shape entropy 0.29 -> 0.76 nats). The base paths use the same sampler, so the state a fork starts from
has the law the measurement assumes.

The entropy is the plug-in entropy of the K labels, which is biased low by about (L - 1) / (2K) nats even for
a perfect model; the curve to compare it with is the exact filter's expectation of the same plug-in estimator
at the same K (exact_filter.expected_plugin_entropy), not the K = infinity entropy.

Each base trajectory is integrated once, recording its state at every grid tau (the prefix is shared); the
N * K forks of one tau run in batches of at most ``batch_size`` (every fork has its own generator, so the batches
change no fork's path).
"""

from __future__ import annotations

from typing import Callable, Collection

import numpy as np
import torch
from tqdm import tqdm

from ..model.sampling import sample, time_grid
from ..rng import derive_seeds, make_generators


def path_grid(steps: int, taus: np.ndarray, eps: float = 1e-5) -> torch.Tensor:
    """The sampler grid with the measurement taus inserted (taus >= 1 - eps map to the last point)."""
    base = time_grid(steps, eps=eps).numpy()
    pts = np.unique(np.concatenate([base, np.minimum(taus, base[-1])]).round(12))
    return torch.tensor(pts, dtype=torch.float64)


def fork_grid_indices(grid: torch.Tensor, taus: np.ndarray) -> list[int]:
    """Each tau's index in ``path_grid(steps, taus)`` (every tau is on it; taus >= 1 - eps map to the last point)."""
    return [int(np.argmin(np.abs(grid.numpy() - min(t, float(grid[-1]))))) for t in taus]


def normalised_entropy(labels: np.ndarray, n_levels: int) -> float:
    """Entropy of the empirical distribution of ``labels`` divided by log(n_levels) (0 if n_levels == 1)."""
    if n_levels < 2:
        return 0.0
    _, counts = np.unique(labels, return_counts=True)
    p = counts / counts.sum()
    return float(-(p * np.log(p)).sum() / np.log(n_levels))


def fork_entropies(fork_labels: np.ndarray, n_levels: list[int]) -> np.ndarray:
    """(n_base, n_forks, 6) labels -> (n_base, 6) normalised entropies."""
    return np.array(
        [
            [normalised_entropy(fork_labels[b, :, k], n_levels[k]) for k in range(fork_labels.shape[2])]
            for b in range(fork_labels.shape[0])
        ]
    )


@torch.no_grad()
def fork_labels(
    score_fn: Callable,
    sde,
    classify: Callable,
    *,
    shape: tuple[int, ...],
    taus: np.ndarray,
    n_base: int,
    n_forks: int,
    steps: int,
    method: str,
    snr: float,
    seed: int,
    device: torch.device,
    keep_images: set[int] = frozenset(),
    corrector: bool = False,
    skip: Collection[int] = frozenset(),
    on_tau: Callable[[int, np.ndarray, torch.Tensor | None], None] | None = None,
    batch_size: int | None = None,
) -> tuple[np.ndarray, dict[int, torch.Tensor]]:
    """Integrate n_base base paths once, fork each K times at every tau, label every fork's final image.

    Args:
        score_fn: ``score(x, t, labels=None)`` at forward time t = 1 - tau.
        sde: the VE SDE (``prior_sampling``, ``sigma``).
        classify: final images (B, *shape) in [0, 1] -> (B, F) LongTensor of level indices.
        shape: one image's shape (C, H, W).
        taus: generative times of the forks (0 = noise, 1 = data).
        keep_images: tau indices whose forks of base 0 are returned.
        corrector: with method "pc", also run its Langevin corrector (one step per grid point) on the base
            paths and the forks; False (the default) runs the reverse-diffusion predictor alone.
        skip: tau indices not to fork (done before, or another shard's: each tau's forks have their own seeds, so
            the others are the same with or without them); the base paths stop at the last tau forked from.
        on_tau: called as each tau is done with (tau index, its labels (n_base, n_forks, F), its kept images or
            None), e.g. to save partial results.
        batch_size: base paths, and forks, per network call (None: all of them at once).

    Returns:
        (labels (taus not skipped, n_base, n_forks, F), {tau index: (n_forks, *shape) final images of base 0}).
    """
    grid = path_grid(steps, taus)
    at = fork_grid_indices(grid, taus)
    todo = [j for j in range(len(taus)) if j not in skip]
    if not todo:
        return np.zeros((0, n_base, n_forks, 0), np.int64), {}
    n_total = n_base * n_forks
    batch = n_total if batch_size is None else int(batch_size)
    if batch < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    base_seeds = derive_seeds(seed, "sample", n_base)
    n_corr = 1 if corrector else 0
    # the base paths up to the last tau forked from: the per-sample generators make this prefix of the whole path
    # the same, so a shard of the grid (or a resumed run) forks from the states an uninterrupted run forks from
    last = max(at[j] for j in todo)
    parts: dict[int, list[torch.Tensor]] = {}
    for a in range(0, n_base, batch):
        gens = make_generators(base_seeds[a : a + batch], device)
        x = sde.prior_sampling((len(gens), *shape), gens, device)
        base = sample(
            score_fn,
            sde,
            x,
            grid[: last + 1],
            gens,
            method=method,
            snr=snr,
            n_corrector=n_corr,
            record_at=sorted({at[j] for j in todo}),
            denoise=False,
        )
        for i, state in base.states.items():
            parts.setdefault(i, []).append(state)
    states = {i: torch.cat(p) for i, p in parts.items()}  # (n_base, ...) on the CPU, per grid index
    out, kept = [], {}
    for j in tqdm(todo, desc="forking", mininterval=2):
        i = at[j]
        fork_seeds = [int(s) for s in derive_seeds(seed, "fork", n_total, index=j)]
        labels, firsts = [], []
        for a in range(0, n_total, batch):  # fork r continues base r // n_forks
            rows = torch.arange(a, min(n_total, a + batch))
            finals = sample(
                score_fn,
                sde,
                states[i][rows // n_forks].to(device),
                grid[i:],
                make_generators(fork_seeds[a : a + batch], device),
                method=method,
                snr=snr,
                n_corrector=n_corr,
            ).x
            labels.append(classify(finals.clamp(0, 1)).cpu())
            if j in keep_images and a < n_forks:
                firsts.append(finals[: n_forks - a].cpu())
        out.append(torch.cat(labels).numpy().reshape(n_base, n_forks, -1))
        if j in keep_images:
            kept[j] = torch.cat(firsts)
        if on_tau is not None:
            on_tau(j, out[-1], kept.get(j))
    return (np.stack(out) if out else np.zeros((0, n_base, n_forks, 0), np.int64)), kept
