"""The ``exact_filter`` stage: the exact filter's curves of a Shapes3D file, streamed from the HDF5.

The SDE is the score networks' (sigma_min, sigma_max from the unconditional model's hparams.json), so the
curves are the ground truth of exactly the path the learned measurements walk. Mixtures: ``all`` (the whole
file: on a complete grid, the data distribution) and ``train`` (the training split, which the networks saw).
"""

from __future__ import annotations

import json
import logging
import math
import time
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import pandas as pd
import torch

from ..data.factors import FACTOR_NAMES
from ..data.shapes3d import Shapes3D, load_shapes3d, load_split
from ..io import write_parquet
from ..measure.emergence import crossing_tau
from ..measure.exact_filter import filter_curves, level_codes, level_posteriors
from ..model.sde import VESDE

log = logging.getLogger(__name__)

MIXTURES = ("all", "train")


def read_sde(hparams_path: str | Path) -> VESDE:
    """The VE SDE of a saved score model (its hparams.json)."""
    try:
        hp = json.loads(Path(hparams_path).read_text())
        return VESDE(hp["sigma_min"], hp["sigma_max"])
    except (OSError, json.JSONDecodeError, KeyError) as err:
        raise ValueError(f"{hparams_path}: cannot read sigma_min / sigma_max of the score model ({err})") from err


def iter_chunks(
    data: Shapes3D, members: np.ndarray, codes: np.ndarray, chunk_size: int
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(pixels (n, D) uint8, codes (n, F)) of the mixture ``members`` (sorted indices), read chunk by chunk."""
    for a in range(0, len(members), chunk_size):
        idx = members[a : a + chunk_size]
        yield data.images(idx).reshape(len(idx), -1), codes[idx]


def filter_table(
    data: Shapes3D,
    members: np.ndarray,
    sde: VESDE,
    taus: np.ndarray,
    *,
    n_samples: int,
    n_forks: int,
    n_base: int | None = None,
    chunk_size: int,
    seed: int,
    device: torch.device,
    codes_present: tuple[np.ndarray, list[np.ndarray]] | None = None,
    progress: bool = True,
) -> pd.DataFrame:
    """The exact filter's curves of one mixture (the images ``members`` of ``data``), one row per tau x factor.

    Queries y = x_j + sigma(1 - tau) z with j uniform over the members and z ~ N(0, I), both seeded by ``seed``
    and shared by every tau; I(Y_0) is evaluated at sigma_max (tau = 0) for the ``mi_at_noise`` column. With
    ``n_base`` (the forking measurement's base paths), ``entropy_k_low`` / ``entropy_k_high`` hold the central 95%
    range of that measurement on the exact law (exact_filter.plugin_entropy_band, on these queries).
    """
    codes, present = codes_present if codes_present is not None else level_codes(data.label_indices)
    n_levels = [len(p) for p in present]
    members = np.sort(np.asarray(members, dtype=np.int64))
    rng = np.random.default_rng(seed)
    j = rng.choice(members, size=n_samples, replace=True)
    queries = data.images(j).reshape(n_samples, -1)
    z = torch.randn(queries.shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    sigmas = np.concatenate([[sde.sigma_max], sde.sigma(torch.as_tensor(1 - taus, dtype=torch.float64)).numpy()])
    n_chunks = math.ceil(len(members) / chunk_size)
    chunks = iter_chunks(data, members, codes, chunk_size)
    if progress:
        from tqdm import tqdm

        chunks = tqdm(chunks, total=n_chunks, desc="exact filter", mininterval=5)
    probs = level_posteriors(chunks, queries, z, sigmas, n_levels, device=device)
    marginals = [np.bincount(codes[members, k], minlength=n_levels[k]) for k in range(len(n_levels))]
    band_seed = int(np.random.SeedSequence([seed, 1]).generate_state(1)[0])  # not the queries' default_rng(seed)
    c = filter_curves(probs, marginals, n_forks, n_base, seed=band_seed)
    rows = []
    for t, tau in enumerate(taus):
        for k, factor in enumerate(FACTOR_NAMES):
            rows.append(
                {
                    "tau": float(tau),
                    "factor": factor,
                    "mi": c["mi"][t + 1, k],
                    "mi_se": c["mi_se"][t + 1, k],
                    "mi_at_noise": c["mi"][0, k],
                    "entropy": c["entropy"][t + 1, k],
                    "entropy_k": c["entropy_k"][t + 1, k],
                    "entropy_k_low": c["entropy_k_low"][t + 1, k],
                    "entropy_k_high": c["entropy_k_high"][t + 1, k],
                    "bayes_accuracy": c["bayes_accuracy"][t + 1, k],
                    "ceiling": c["ceiling"][t + 1, k],
                    "n_levels": n_levels[k],
                    "sigma": float(sigmas[t + 1]),
                }
            )
    return pd.DataFrame(rows)


def compute_exact_filter(
    h5: str,
    split_path: str,
    hparams_path: str,
    out: str,
    *,
    taus: Sequence[float],
    n_samples: int,
    n_forks: int,
    n_base: int | None,
    mixtures: Sequence[str],
    chunk_size: int,
    seed: int,
    device: torch.device,
) -> pd.DataFrame:
    """The ``compute_exact_filter`` rule: one row per mixture x tau x factor (schema in docs/architecture.md)."""
    bad = set(mixtures) - set(MIXTURES)
    if bad or not mixtures:
        raise ValueError(f"exact_filter.mixtures: unknown {sorted(bad)} (expected a non-empty subset of {MIXTURES})")
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = False
    taus = np.asarray(taus, dtype=np.float64)
    sde = read_sde(hparams_path)
    data = load_shapes3d(h5)
    split = load_split(split_path, data.n)
    codes_present = level_codes(data.label_indices)
    frames, info = [], {}
    for m, name in enumerate(mixtures):
        members = np.arange(data.n) if name == "all" else split["train"]
        t0 = time.perf_counter()
        df = filter_table(
            data,
            members,
            sde,
            taus,
            n_samples=n_samples,
            n_forks=n_forks,
            n_base=n_base,
            chunk_size=chunk_size,
            seed=int(np.random.SeedSequence([seed, m]).generate_state(1)[0]),
            device=device,
            codes_present=codes_present,
        )
        info[name] = {"n_images": int(len(members)), "seconds": round(time.perf_counter() - t0, 2)}
        log.info(
            "mixture %s: %d images, %d queries, %.1f s; tau at 50%% of the exact MI's range: %s",
            name,
            len(members),
            n_samples,
            info[name]["seconds"],
            {
                f: round(crossing_tau(d["tau"].to_numpy(), d["mi"].to_numpy(), 0.5, True), 3)
                for f, d in df.groupby("factor", sort=False)
            },
        )
        frames.append(df.assign(mixture=name, n_images=len(members)))
    df = pd.concat(frames, ignore_index=True)
    df["n_samples"] = np.int64(n_samples)
    df["n_forks"] = np.int64(n_forks)
    df["n_base"] = np.int64(n_base) if n_base is not None else np.int64(0)
    df["seed"] = np.int64(seed)
    df = df.sort_values(["mixture", "factor", "tau"], kind="stable").reset_index(drop=True)
    write_parquet(
        df,
        out,
        {
            "sigma_min": sde.sigma_min,
            "sigma_max": sde.sigma_max,
            "dataset": str(h5),
            "sde_from": str(hparams_path),
            "mixtures": info,
            "device": str(device),
            "definition": "pi_tau(i|y) = softmax(-||y - x_i||^2 / (2 sigma^2)) over the mixture's "
            "images; mi = H(phi) - E H(phi|y); mi_at_noise at sigma_max",
            "time_convention": "tau generative: 0 = noise, 1 = data",
        },
    )
    return df
