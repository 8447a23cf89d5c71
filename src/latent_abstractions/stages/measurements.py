"""Measurement stages on the shared tau grid (generative time: 0 = noise, 1 = data): features for the
linear probes, mutual information, forking. The probes themselves are in ``stages.probes`` (no torch).

MI and forking run on a ``score`` (``agreement.SCORES``): the trained network, or the exact score of the data
distribution (every image of the file, ``exact_filter.exact_score_fn``) on the same SDE, images, seeds and
settings, so that only the score differs: the exact-score run is the control that tells the measurement's own
error from the network's.
"""

from __future__ import annotations

import logging
import math
from typing import Callable, NamedTuple, Sequence

import h5py
import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from ..data.factors import FACTOR_NAMES
from ..data.shapes3d import Shapes3D, load_shapes3d, load_split, to_model_input, to_uint8
from ..io import atomic_path
from ..measure.agreement import SCORES
from ..measure.exact_filter import exact_score_fn
from ..measure.features import choose_images, pooled_features
from ..measure.forking import fork_entropies, fork_labels
from ..measure.mutual_info import ESTIMATORS, mi_contributions, mi_from_contributions, tau_intervals
from ..measure.stats import bootstrap_ci
from ..model.checkpoint import load_classifier, load_score_model
from ..model.classifier import predict
from ..model.score import get_score_fn
from ..model.sde import VESDE
from ..partials import PartialResults
from ..plan import stage_batch
from ..rng import derive_seed, numpy_rng, seeded_subset
from ..taus import shard_range
from .exact import read_sde
from .feature_table import FeatureTableWriter, cell_table
from .shards import load_parts, save_part
from .tables import TIME_CONVENTION, finish_table

log = logging.getLogger(__name__)

#: The ``checkpoint`` column of a table measured on the exact score (no network file to hash).
EXACT_CHECKPOINT = "exact"
#: Queries per block of the exact score: a (block x images) float64 distance matrix each, ~21 MB at 5,120 images.
EXACT_SCORE_BLOCK = 512


class ScoreSource(NamedTuple):
    """What a measurement runs on: ``fn(x, t, labels=None)``, its SDE, provenance (the checkpoint's sha256, or
    ``EXACT_CHECKPOINT``), the network's hparams (None for the exact score) and the Parquet metadata to add."""

    fn: Callable
    sde: VESDE
    checkpoint: str
    hparams: dict | None
    metadata: dict
    net: torch.nn.Module | None = None  # the network (None for the exact score): its rows are counted


def load_score(
    score: str, model_path: str | None, hparams_path: str, data: Shapes3D | None, device: torch.device
) -> ScoreSource:
    """The score a measurement runs on.

    Args:
        score: "network" (the model at ``model_path`` / ``hparams_path``) or "exact" (the exact score of every
            image of ``data``, on the SDE of the score model whose ``hparams_path`` is given, as the exact filter
            reads it, so that every curve walks one path).
    """
    if score == "network":
        if model_path is None:
            raise ValueError(f"score 'network' needs the model file (got none beside {hparams_path})")
        model = load_score_model(model_path, hparams_path, device)
        return ScoreSource(get_score_fn(model.net, model.sde), model.sde, model.sha256, model.hparams, {}, model.net)
    if score == "exact":
        if data is None:
            raise ValueError("score 'exact' needs the dataset file (h5) whose exact score it is")
        sde = read_sde(hparams_path)
        images = to_model_input(data.images(np.arange(data.n))).to(device)
        fn = exact_score_fn(images, data.label_indices, sde, batch_size=EXACT_SCORE_BLOCK)
        meta = {
            "score": f"exact score of the {data.n} images of {data.path} (exact_filter.exact_score_fn); no network",
            "sde_from": str(hparams_path),
        }
        return ScoreSource(fn, sde, EXACT_CHECKPOINT, None, meta)
    raise ValueError(f"score must be one of {SCORES}, got {score!r}")


def extract_features(
    model_path: str,
    hparams_path: str,
    h5: str,
    split: str,
    out: str,
    *,
    taus: Sequence[float],
    layers: list[str],
    pooling: str,
    grid: int,
    n_train: int,
    n_test: int,
    batch_size: int,
    seed: int,
    device: torch.device,
    device_memory_gb: float | str = "auto",
    shard: Sequence[int] | None = None,
) -> None:
    """The ``extract_features`` rule: one row per image x tau x layer (schema in docs/architecture.md).

    Each tau's rows are written as soon as they are computed (:class:`feature_table.FeatureTableWriter`), so the
    job holds the uint8 images, one tau's noise and noisy images, its features and one Parquet row group, never the
    table (at paper scale ~3 GB, against ~18 GB when the table was built in memory).
    ``batch_size``: images per network call, at most (fewer where ``device_memory_gb`` needs it).
    ``shard``: (index, count) of a tau shard: ``out`` then holds this shard's taus only (each tau's noise is
    seeded by its place in the whole grid), for :func:`feature_table.gather_feature_tables`.
    """
    taus = np.asarray(taus)
    mine = shard_range(len(taus), shard[1], shard[0]) if shard is not None else range(len(taus))
    model = load_score_model(model_path, hparams_path, device)
    net, sde = model.net, model.sde
    batch_size = stage_batch(
        batch_size,
        key="features.batch_size",
        rule="extract_features",
        net_hparams=model.hparams["net"],
        use="features",
        layers=layers,
        device_memory_gb=device_memory_gb,
        device=device,
    )
    data = load_shapes3d(h5)
    chosen = choose_images(load_split(split, data.n), n_train, n_test, seed)
    idx = np.concatenate([chosen["train"], chosen["test"]])
    split_names = np.array(["train"] * len(chosen["train"]) + ["test"] * len(chosen["test"]))
    images = data.images(idx)  # uint8 (n, H, W, 3); made float a block at a time below
    labels = data.label_indices[idx]
    shape = (len(idx), 3, data.resolution, data.resolution)
    with FeatureTableWriter(out) as table:
        for j in tqdm(mine, desc="features", mininterval=2):
            tau = taus[j]
            # the same noise whatever the batch size
            gen = torch.Generator().manual_seed(derive_seed(seed, "feature_noise", j))
            sigma = float(sde.sigma(float(sde.tau_to_t(tau))))
            # x_tau = x0 + sigma z, laid out like the images (channels_last: NHWC in the file), which decides the
            # convolutions' summation order; built in place so that the job holds one float copy of the images
            xt = torch.empty(shape, memory_format=torch.channels_last)
            torch.mul(torch.randn(shape, generator=gen), sigma, out=xt)
            for a in range(0, len(idx), 4096):
                xt[a : a + 4096].add_(to_model_input(images[a : a + 4096]))
            feats = pooled_features(
                net,
                xt,
                sigma,
                layers,
                pooling=pooling,
                grid=grid,
                pix_grid=min(8, data.resolution),
                batch_size=batch_size,
                device=device,
            )
            del xt
            if not table.is_open:  # every layer's width is known from the first tau
                dims = {name: mat.shape[1] for name, mat in feats.items()}
                table.open(
                    {
                        "checkpoint": model.sha256,
                        "seed": seed,
                        "layers": layers,
                        "pooling": pooling,
                        "grid": grid,
                        "dims": dims,
                        "n_levels": list(data.n_levels_present),
                        "time_convention": f"{TIME_CONVENTION}; x_tau = x0 + sigma(1 - tau) z",
                    }
                )
            for name, mat in feats.items():
                table.add(cell_table(idx, split_names, float(tau), name, labels, mat))
            del feats
    log.info("features: %d images x %d taus x %d layers, dims %s", len(idx), len(mine), len(dims), dims)
    log.info("network evaluations: %d rows (features)", net.evaluations)


def estimate_mutual_information(
    model_path: str | None,
    hparams_path: str,
    h5: str,
    split: str,
    out: str,
    *,
    score: str = "network",
    taus: Sequence[float],
    n_images: int,
    n_times: int,
    batch_size: int,
    seed: int,
    device: torch.device,
    estimator: str = "gap",
    device_memory_gb: float | str = "auto",
    shard: Sequence[int] | None = None,
) -> pd.DataFrame | None:
    """The ``estimate_mutual_information`` rule on held-out images, with the conditional network or the exact score.

    ``score``: "network" (the conditional model at ``model_path``) or "exact" (``model_path`` unused; the SDE from
    ``hparams_path``): see :func:`load_score`. ``estimator``: the integrand, "gap" or "dsm_difference" (see
    :mod:`latent_abstractions.mutual_info`); either way the table holds I(Y_tau) - I(Y_0), the information gained
    since tau = 0. ``batch_size``: rows per network call, at most (fewer where ``device_memory_gb`` needs it).
    ``shard``: (index, count) of a tau shard: ``out`` is then the part (:mod:`stages.shards`) holding the per-image
    contributions of the intervals that end at this shard's taus, drawn as the whole run draws them, for
    :func:`gather_mutual_information`; None: ``out`` is the table.
    """
    taus = np.asarray(taus)
    data = load_shapes3d(h5)
    source = load_score(score, model_path, hparams_path, data, device)
    if source.hparams is not None and source.hparams["net"].get("n_levels") is None:
        raise ValueError(f"{hparams_path}: mutual information needs the conditional model (n_levels is null)")
    test = load_split(split, data.n)["test"]
    idx = seeded_subset(test, n_images, seed)
    x0 = to_model_input(data.images(idx)).to(device)
    labels = torch.from_numpy(data.label_indices[idx])
    gen = torch.Generator().manual_seed(seed)
    # I(Y; phi) = 0 exactly for a factor with one level in the data (not measurable): not estimated
    measurable = [k for k, n_lv in enumerate(data.n_levels_present) if n_lv > 1]
    if source.hparams is not None:  # the network: as many rows as its activations leave room for
        batch_size = stage_batch(
            batch_size,
            key="mutual_info.batch_size",
            rule="estimate_mutual_information",
            net_hparams=source.hparams["net"],
            device_memory_gb=device_memory_gb,
            device=device,
            fixed_extra=x0.numel() * x0.element_size(),
            min_rows=len(measurable) + 1,
        )
    intervals = tau_intervals(taus, shard_range(len(taus), shard[1], shard[0])) if shard is not None else None
    contrib = mi_contributions(
        source.fn,
        source.sde,
        x0,
        labels,
        taus,
        n_times,
        gen,
        batch_size,
        progress=True,
        factors=measurable,
        estimator=estimator,
        intervals=intervals,
    )
    if source.net is not None:
        log.info("network evaluations: %d rows (mutual information)", source.net.evaluations)
    header = {
        "taus": [float(t) for t in taus],
        "measurable": measurable,
        "n_levels_present": [int(n) for n in data.n_levels_present],
        "n_images": len(idx),
        "n_times": int(n_times),
        "estimator": estimator,
        "score": score,
        "seed": seed,
        "checkpoint": source.checkpoint,
        "metadata": source.metadata,
    }
    if shard is not None:
        save_part(out, {"contrib": contrib.numpy()}, {**header, "shard": [int(i) for i in shard]})
        log.info("MI shard %d of %d: intervals %d..%d", shard[0], shard[1], intervals.start, intervals.stop - 1)
        return None
    return write_mutual_info_table(contrib, header, out)


def gather_mutual_information(parts: Sequence[str], out: str) -> pd.DataFrame:
    """The ``gather_mutual_information`` rule: the table of the tau shards' parts (in shard order), computed as
    an unsharded run computes it from the same per-image contributions."""
    loaded = load_parts(parts)
    contrib = torch.from_numpy(np.concatenate([p.arrays["contrib"] for p in loaded], axis=1))
    return write_mutual_info_table(contrib, loaded[0].header, out)


def write_mutual_info_table(contrib: torch.Tensor, header: dict, out: str) -> pd.DataFrame:
    """The MI table from every interval's per-image contributions (``mutual_info.mi_contributions``) and the
    run's ``header`` (settings and provenance, as :func:`estimate_mutual_information` records them)."""
    taus = np.asarray(header["taus"])
    measurable, n_levels_present = header["measurable"], header["n_levels_present"]
    mi, se = np.zeros((2, len(taus), len(FACTOR_NAMES)))
    mi[:, measurable], se[:, measurable] = mi_from_contributions(contrib, taus)
    rows = []
    for j, tau in enumerate(taus):
        for k, factor in enumerate(FACTOR_NAMES):
            n_lv = int(n_levels_present[k])
            rows.append(
                {
                    "tau": float(tau),
                    "factor": factor,
                    "mi": float(mi[j, k]),
                    "se": float(se[j, k]),
                    "ceiling": math.log(n_lv),
                    "n_levels": n_lv,
                    "n_images": header["n_images"],
                    "n_times": header["n_times"],
                }
            )
    estimator, score = header["estimator"], header["score"]
    df = finish_table(
        pd.DataFrame(rows),
        out,
        seed=header["seed"],
        checkpoint=header["checkpoint"],
        sort_by=["factor", "tau"],
        metadata={
            "estimator": f"{estimator}: {ESTIMATORS[estimator]} (stratified MC); I(Y_tau) - I(Y_0)",
            **header["metadata"],
        },
    )
    over = df[df["mi"] > df["ceiling"] + 3 * df["se"]]
    for factor, sub in over.groupby("factor"):  # an exact estimator cannot exceed log(levels)
        log.warning(
            "MI of %s exceeds its ceiling %.3f nats by more than 3 se from tau = %.3f (max %.3f): %s",
            factor,
            sub["ceiling"].iloc[0],
            sub["tau"].min(),
            sub["mi"].max(),
            "the conditional network's label branches are undertrained"
            if score == "network"
            else "with the exact score, the estimator's own (too few images or strata)",
        )
    log.info(
        "MI at tau=1 per factor (nats, %s score): %s",
        score,
        df[df["tau"] == df["tau"].max()].set_index("factor")["mi"].round(3).to_dict(),
    )
    return df


def strip_indices(taus: np.ndarray, strip_taus: Sequence[float], tol: float = 1e-9) -> list[int]:
    """Sorted grid indices of the taus nearest to ``strip_taus``; a value off the grid is logged with its snap."""
    out = []
    for s in strip_taus:
        j = int(np.argmin(np.abs(taus - s)))
        if abs(taus[j] - s) > tol:
            log.warning(
                "forking.strip_taus: %g is not on the tau grid; the strip is drawn at the nearest "
                "grid point tau = %.6g",
                s,
                taus[j],
            )
        out.append(j)
    return sorted(set(out))


def run_forking(
    model_path: str | None,
    hparams_path: str,
    classifier_path: str,
    classifier_hparams_path: str,
    table_out: str,
    strips_out: str,
    *,
    score: str = "network",
    h5: str | None = None,
    taus: Sequence[float],
    n_base: int,
    n_forks: int,
    steps: int,
    method: str,
    snr: float,
    strip_taus: Sequence[float],
    seed: int,
    device: torch.device,
    corrector: bool = False,
    n_bootstrap: int = 1000,
    partial_dir: str | None = None,
    batch_size: int = 512,
    device_memory_gb: float | str = "auto",
    shard: Sequence[int] | None = None,
) -> pd.DataFrame | None:
    """The ``run_forking`` rule: entropy table (one row per tau x factor) and fork strips of base 0.

    ``score``: "network" (the unconditional model at ``model_path``) or "exact" (the exact score of the images in
    ``h5``; ``model_path`` unused, the SDE from ``hparams_path``): see :func:`load_score`. Either way the
    attribute classifier labels the forks. ``corrector``: run the Langevin corrector on base paths and forks
    (method "pc"); False (the default) forks with the predictor alone, whose end points follow the exact filter's
    label law (see forking.py).
    ``partial_dir``: where each tau's fork labels (and strip) are saved as soon as they are done, with this run's
    settings, seed and score's provenance (:class:`partials.PartialResults`); a rerun after a kill forks only the
    taus not saved there by this same run, and writes the same table as an uninterrupted run.
    ``batch_size``: forks (and base paths) per network call, at most (fewer where ``device_memory_gb`` needs it).
    ``shard``: (index, count) of a tau shard: only this shard's taus are forked (the base paths integrated up to
    its last tau), ``table_out`` is the part (:mod:`stages.shards`) with their labels and ``strips_out`` the strips
    of its taus, for :func:`gather_forking`; the shards share ``partial_dir`` (one file per tau).
    """
    taus = np.asarray(taus)
    data = load_shapes3d(h5) if h5 is not None else None
    source = load_score(score, model_path, hparams_path, data, device)
    clf = load_classifier(classifier_path, classifier_hparams_path, device)
    n_levels = [len(v) for v in clf.hparams["levels_present"]]
    res = source.hparams["net"]["img_resolution"] if source.hparams is not None else data.resolution
    strip_idx = strip_indices(taus, strip_taus)
    if source.hparams is not None:  # the network: as many rows as its activations leave room for
        batch_size = stage_batch(
            batch_size,
            key="forking.batch_size",
            rule="run_forking",
            net_hparams=source.hparams["net"],
            device_memory_gb=device_memory_gb,
            device=device,
        )
    mine = shard_range(len(taus), shard[1], shard[0]) if shard is not None else range(len(taus))
    # everything a tau's fork labels depend on (the base paths' grid depends on every tau)
    key = {
        "taus": [float(t) for t in taus],
        "n_base": n_base,
        "n_forks": n_forks,
        "steps": steps,
        "method": method,
        "snr": snr,
        "corrector": corrector,
        "seed": seed,
        "score": score,
        "checkpoint": source.checkpoint,
        "classifier": clf.sha256,
        "device": device.type,
    }
    store = PartialResults(partial_dir, key) if partial_dir else None
    done: dict[int, dict[str, np.ndarray]] = {}
    for j in mine if store else ():
        saved = store.load(j)
        if saved is not None and (j not in strip_idx or "strip" in saved):
            done[j] = saved
    resumed = len(done)
    if done:
        log.info("forking: %d of %d taus resumed from %s", len(done), len(mine), partial_dir)

    def finish_tau(j: int, labels_j: np.ndarray, kept_j: torch.Tensor | None) -> None:
        done[j] = {"labels": labels_j, **({"strip": to_uint8(kept_j)} if j in strip_idx else {})}
        if store:
            store.save(j, done[j])

    if len(done) < len(mine):
        fork_labels(
            source.fn,
            source.sde,
            lambda x: predict(clf.net, x),
            shape=(3, res, res),
            taus=taus,
            n_base=n_base,
            n_forks=n_forks,
            steps=steps,
            method=method,
            snr=snr,
            seed=seed,
            device=device,
            keep_images=set(strip_idx),
            corrector=corrector,
            skip=set(done) | (set(range(len(taus))) - set(mine)),
            on_tau=finish_tau,
            batch_size=batch_size,
        )
    if source.net is not None:  # the taus resumed from partial results cost nothing in this job
        log.info(
            "network evaluations: %d rows (forking, %d of %d taus forked)",
            source.net.evaluations,
            len(mine) - resumed,
            len(mine),
        )
    header = {
        "taus": key["taus"],
        "strip_idx": strip_idx,
        "n_levels": n_levels,
        "res": int(res),
        "n_base": n_base,
        "n_forks": n_forks,
        "steps": steps,
        "method": method,
        "snr": snr,
        "corrector": corrector,
        "n_bootstrap": n_bootstrap,
        "seed": seed,
        "score": score,
        "checkpoint": source.checkpoint,
        "metadata": source.metadata,
    }
    labels = np.stack([done[j]["labels"] for j in mine])
    strips = [j for j in strip_idx if j in mine]
    images = (
        np.stack([done[j]["strip"] for j in strips]) if strips else np.zeros((0, n_forks, res, res, 3), dtype=np.uint8)
    )
    if shard is not None:
        save_part(table_out, {"labels": labels}, {**header, "shard": [int(i) for i in shard]})
        write_strips(images, taus[strips], strips_out)
        log.info("forking shard %d of %d: taus %d..%d", shard[0], shard[1], mine.start, mine.stop - 1)
        return None
    return write_forking_outputs(labels, images, header, table_out, strips_out)


def gather_forking(parts: Sequence[str], strip_parts: Sequence[str], table_out: str, strips_out: str) -> pd.DataFrame:
    """The ``gather_forking`` rule: the entropy table and fork strips of the tau shards' parts and strips (in shard
    order), computed as an unsharded run computes them from the same fork labels."""
    loaded = load_parts(parts)
    labels = np.concatenate([p.arrays["labels"] for p in loaded])
    images = []
    for path in strip_parts:
        with h5py.File(path, "r") as f:
            images.append(f["images"][...])
    return write_forking_outputs(labels, np.concatenate(images), loaded[0].header, table_out, strips_out)


def write_strips(images: np.ndarray, taus: np.ndarray, out: str) -> None:
    """The fork strips file: ``images[i, k]`` = fork k of base path 0 from its state at ``taus[i]``."""
    with atomic_path(out) as tmp, h5py.File(tmp, "w") as f:
        f["images"] = images
        f["taus"] = np.asarray(taus, dtype=np.float64)
        f.attrs["description"] = "forks of base trajectory 0: images[i, k] = fork k from the state at taus[i]"


def write_forking_outputs(
    labels: np.ndarray, strips: np.ndarray, header: dict, table_out: str, strips_out: str
) -> pd.DataFrame:
    """The entropy table (bootstrap CIs over base paths) and the strips file from every tau's fork labels
    ((taus, n_base, n_forks, F)), the strips at ``header["strip_idx"]`` and the run's ``header`` (settings and
    provenance, as :func:`run_forking` records them)."""
    taus, n_levels, seed = np.asarray(header["taus"]), header["n_levels"], header["seed"]
    if len(labels) != len(taus) or len(strips) != len(header["strip_idx"]):
        raise ValueError(
            f"fork labels of {len(labels)} taus and {len(strips)} strips, expected {len(taus)} and "
            f"{len(header['strip_idx'])}"
        )
    rows = []
    for j, tau in enumerate(taus):
        ent = fork_entropies(labels[j], n_levels)  # (n_base, 6)
        rng = numpy_rng(seed, j)
        for k, factor in enumerate(FACTOR_NAMES):
            lo, hi = bootstrap_ci(ent[:, k], header["n_bootstrap"], rng)
            rows.append(
                {
                    "tau": float(tau),
                    "factor": factor,
                    "entropy": float(ent[:, k].mean()),
                    "ci_low": lo,
                    "ci_high": hi,
                    "n_levels": int(n_levels[k]),
                    "n_base": header["n_base"],
                    "n_forks": header["n_forks"],
                }
            )
    df = finish_table(
        pd.DataFrame(rows),
        table_out,
        seed=seed,
        checkpoint=header["checkpoint"],
        sort_by=["factor", "tau"],
        metadata={
            "steps": header["steps"],
            "method": header["method"],
            "snr": header["snr"],
            "corrector": header["corrector"],
            "entropy_estimator": f"plug-in entropy of K = {header['n_forks']} fork labels",
            **header["metadata"],
        },
    )
    write_strips(strips, taus[header["strip_idx"]], strips_out)
    log.info(
        "fork entropy at the first and last tau (%s score): %s",
        header["score"],
        df.groupby("factor")["entropy"].agg(["first", "last"]).round(3).to_dict("index"),
    )
    return df
