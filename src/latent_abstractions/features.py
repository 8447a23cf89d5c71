"""Per-tau features of the unconditional score network, for the linear probes.

Held-out and training images are noised to generative time tau (forward time t = 1 - tau) with the VE
perturbation kernel x0 + sigma(1 - tau) z, passed through the EMA network, and the configured feature maps
are pooled to fixed-size vectors. The raw noisy pixels, average-pooled, are kept as the baseline layer
"pixels".

Table (one row per image x tau x layer): image_index, split, tau, layer, the six factor level indices,
features (list<float32>, of one fixed width per layer).
"""

from __future__ import annotations

import logging

import numpy as np
import pyarrow as pa
import torch
import torch.nn.functional as F
from tqdm import tqdm

from .checkpoint import load_score_model, model_sha256
from .factors import FACTOR_NAMES
from .io import write_parquet
from .shapes3d import load_shapes3d, load_split, to_model_input

log = logging.getLogger(__name__)
PIXELS = "pixels"


def pool(h: torch.Tensor, pooling: str, grid: int) -> torch.Tensor:
    """(B, C, h, w) -> (B, D): channel means, or an adaptive average pool to grid x grid."""
    if pooling == "mean":
        return h.mean(dim=(2, 3))
    if pooling == "grid":
        return F.adaptive_avg_pool2d(h, grid).flatten(1)
    raise ValueError(f"pooling must be 'mean' or 'grid', got {pooling!r}")


def choose_images(split: dict[str, np.ndarray], n_train: int, n_test: int, seed: int) -> dict[str, np.ndarray]:
    """Seeded, sorted subsets of the train and test splits (all of a split if it is smaller)."""
    rng = np.random.default_rng(seed)
    out = {}
    for name, n in (("train", n_train), ("test", n_test)):
        idx = split[name]
        out[name] = np.sort(rng.choice(idx, size=min(n, len(idx)), replace=False))
    return out


@torch.no_grad()
def extract_features(model_dir: str, h5: str, split_path: str, out: str, *, taus: np.ndarray, layers: list[str],
                     pooling: str, grid: int, n_train: int, n_test: int, batch_size: int, seed: int,
                     device: torch.device) -> None:
    """The ``extract_features`` rule (see the module docstring)."""
    net, sde, _ = load_score_model(model_dir, device)
    data = load_shapes3d(h5)
    chosen = choose_images(load_split(split_path, data.n), n_train, n_test, seed)
    idx = np.concatenate([chosen["train"], chosen["test"]])
    split_names = np.array(["train"] * len(chosen["train"]) + ["test"] * len(chosen["test"]))
    x0 = to_model_input(data.images(idx))
    labels = data.label_indices[idx]
    pix_grid = min(8, data.resolution)
    cols: dict[str, list] = {"image_index": [], "split": [], "tau": [], "layer": [], "features": []}
    cols.update({f: [] for f in FACTOR_NAMES})
    dims: dict[str, int] = {}
    for j, tau in enumerate(tqdm(taus, desc="features", mininterval=2)):
        gen = torch.Generator().manual_seed(seed * 1000 + j)  # the same noise whatever the batch size
        z = torch.randn(x0.shape, generator=gen)
        t = float(sde.tau_to_t(tau))
        sigma = float(sde.sigma(t))
        xt = x0 + sigma * z
        per_layer: dict[str, list[torch.Tensor]] = {name: [] for name in [*layers, PIXELS]}
        for i in range(0, len(xt), batch_size):
            xb = xt[i:i + batch_size].to(device)
            feats = net.forward_features(xb, torch.full((len(xb),), sigma, device=device), layers)
            for name in layers:
                per_layer[name].append(pool(feats[name].float(), pooling, grid).cpu())
            per_layer[PIXELS].append(F.adaptive_avg_pool2d(xb, pix_grid).flatten(1).cpu())
        for name, chunks in per_layer.items():
            mat = torch.cat(chunks).numpy().astype(np.float32)
            dims[name] = mat.shape[1]
            cols["features"].append(mat)
            cols["image_index"].append(idx)
            cols["split"].append(split_names)
            cols["tau"].append(np.full(len(idx), tau))
            cols["layer"].append(np.full(len(idx), name))
            for k, f in enumerate(FACTOR_NAMES):
                cols[f].append(labels[:, k])
    # list<float32> column; all rows of one layer have that layer's width (``dims`` in the metadata).
    arrays = {
        "image_index": pa.array(np.concatenate(cols["image_index"]).astype(np.int64)),
        "split": pa.array(np.concatenate(cols["split"])),
        "tau": pa.array(np.concatenate(cols["tau"]).astype(np.float64)),
        "layer": pa.array(np.concatenate(cols["layer"])),
        **{f: pa.array(np.concatenate(cols[f]).astype(np.int64)) for f in FACTOR_NAMES},
        "features": pa.array([row for mat in cols["features"] for row in mat], type=pa.list_(pa.float32())),
    }
    meta = {"checkpoint": model_sha256(model_dir), "seed": seed, "layers": layers, "pooling": pooling,
            "grid": grid, "dims": dims, "n_levels": list(data.n_levels_present),
            "time_convention": "tau generative: 0 = noise, 1 = data; x_tau = x0 + sigma(1 - tau) z"}
    write_parquet(pa.table(arrays), out, meta)
    log.info("features: %d images x %d taus x %d layers, dims %s", len(idx), len(taus), len(dims), dims)


def load_features(path: str, layer: str, tau: float) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """(features by split, labels (n, 6) by split) of one layer at one tau, from the features table."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    table = pq.read_table(path, filters=[("layer", "=", layer), ("tau", "=", float(tau))])
    feats, labs = {}, {}
    for s in ("train", "test"):
        sub = table.filter(pc.equal(table["split"], s))
        feats[s] = np.stack(sub["features"].to_numpy(zero_copy_only=False)) if sub.num_rows else np.empty((0, 0))
        labs[s] = np.stack([sub[f].to_numpy() for f in FACTOR_NAMES], axis=1)
    return feats, labs
