"""Training stages: the unconditional and conditional score models, and the attribute classifier."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import sys
import tempfile
from pathlib import Path

import torch
import torch.distributed

from .. import SCORE_MODELS
from ..data.shapes3d import load_shapes3d, load_split
from ..io import write_json, write_parquet
from ..locking import check_state_free, state_lock
from ..model.checkpoint import save_classifier, save_model
from ..model.classifier import accuracy_table, fit_classifier
from ..model.networks import backbone_kwargs
from ..model.sde import VESDE, sigma_max_from_data
from ..model.trainer import SegmentEnded, TrainSettings, data_statistics, fit_score_model
from ..rng import derive_seed
from ..runtime import TRAINING_EXECUTION_KEYS, Ranks, join_process_group, run_torchrun, setup_logging

log = logging.getLogger(__name__)


def train_settings(training: dict, *, label_dropout: float, seed: int) -> TrainSettings:
    """:class:`TrainSettings` from the config's ``training`` keys; ValueError naming missing or unknown keys.

    The execution settings that say how a job runs rather than what it trains (``gpus``, ``max_segments``:
    ``runtime.TRAINING_EXECUTION_KEYS``) are no fields and are ignored.
    """
    fields = {f.name for f in dataclasses.fields(TrainSettings)} - {"label_dropout", "seed"}
    training = {k: v for k, v in training.items() if k in fields or k not in TRAINING_EXECUTION_KEYS}
    required = {
        f.name
        for f in dataclasses.fields(TrainSettings)
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    }
    unknown, missing = set(training) - fields, required - set(training) - {"label_dropout", "seed"}
    if unknown or missing:
        raise ValueError(f"training settings: unknown keys {sorted(unknown)}, missing keys {sorted(missing)}")
    return TrainSettings(**training, label_dropout=label_dropout, seed=seed)


def model_training(training: dict, model: str) -> dict:
    """The ``training`` keys for one score model: ``sigma_sampling_cond``, when set, replaces ``sigma_sampling``
    for the conditional model (and is dropped for both)."""
    out = dict(training)
    cond_sampling = out.pop("sigma_sampling_cond", None)
    if model == "cond" and cond_sampling is not None:
        out["sigma_sampling"] = cond_sampling
    return out


def train_score_model(
    h5: str,
    split: str,
    model_out: str,
    hparams_out: str,
    loss_out: str,
    *,
    model: str,
    net: dict,
    label_dropout: float,
    sigma_min: float,
    sigma_max: float | None,
    training: dict,
    seed: int,
    state_dir: str,
    device: torch.device,
    processes: int = 1,
    threads: int = 1,
    log_path: str | None = None,
) -> dict:
    """The ``train_score_model`` rule: train the unconditional or conditional model on the train split.

    Args:
        h5, split: dataset file and split table.
        model_out, hparams_out, loss_out: the EMA weights, their hyperparameters, the loss log (Parquet).
        model: "uncond" or "cond" (conditioned on all six factors, each dropped with ``label_dropout``,
            which the unconditional model ignores).
        net: NCSN++ widths (nf, ch_mult, num_res_blocks, attn_resolutions, dropout, fourier_scale) and its noise
            parametrisation ``precond`` (``model.precond``: "none": output / sigma; "edm": c_in/c_skip/c_out around
            the training images' mean image and their std about it, measured here and stored in the
            hyperparameters).
        sigma_min, sigma_max: the VE SDE (sigma_max None: the largest pairwise distance in the training images).
        training: the optimisation settings (fields of :class:`TrainSettings`, and ``sigma_sampling_cond``:
            :func:`model_training`).
        seed: the run's master seed; state_dir: resumable checkpoints.
        device: where to train (with ``processes`` > 1 on CUDA: process k uses GPU k).
        processes: data-parallel processes (one per GPU), started by torchrun; 1: train in this process.
        threads: intra-op threads of each process.
        log_path: the rule's log, where the processes' output goes (``processes`` > 1).

    Returns:
        info dict (resumed_from, seconds, n_params, sigma_max).

    Raises:
        SegmentEnded: when ``training["segment_minutes"]`` ran out first; the state is saved, run again to resume.
    """
    if model not in SCORE_MODELS:
        raise ValueError(f"model must be one of {SCORE_MODELS}, got {model!r}")
    if not (isinstance(processes, int) and processes >= 1):
        raise ValueError(f"training.gpus must be a positive integer, got {processes!r}")
    if training.get("batch_size", processes) < processes:
        raise ValueError(f"training.batch_size ({training['batch_size']}) must be at least training.gpus ({processes})")
    check_state_free(state_dir)  # fail before loading the data if another trainer holds the state directory
    args = dict(
        h5=h5,
        split=split,
        model_out=model_out,
        hparams_out=hparams_out,
        loss_out=loss_out,
        model=model,
        net=net,
        label_dropout=label_dropout,
        sigma_min=sigma_min,
        sigma_max=sigma_max,
        training=training,
        seed=seed,
        state_dir=state_dir,
    )
    if processes == 1:
        return _train_score_model(**args, device=device, ranks=None)
    return _launch_ranks(args, device.type, processes, threads, log_path)


def _launch_ranks(args: dict, device_type: str, processes: int, threads: int, log_path: str | None) -> dict:
    """Run :func:`_train_score_model` as ``processes`` data-parallel ranks under torchrun (this module's main);
    rank 0 hands back its info dict through a file."""
    with tempfile.TemporaryDirectory(prefix="train-ranks-") as tmp:
        spec, result = Path(tmp) / "spec.json", Path(tmp) / "result.json"
        spec.write_text(json.dumps({"args": args, "device": device_type, "threads": threads, "result": str(result)}))
        proc = run_torchrun(__name__, [str(spec)], processes, threads, log_path)
        if proc.returncode != 0:
            raise RuntimeError(
                f"the {processes} training processes failed (torchrun exit status {proc.returncode}); "
                f"their errors are in {log_path or 'the output above'}"
            )
        info = json.loads(result.read_text())
    if info.get("segment_ended"):
        raise SegmentEnded(info["step"], info["steps"])
    return info


def _train_score_model(
    h5: str,
    split: str,
    model_out: str,
    hparams_out: str,
    loss_out: str,
    *,
    model: str,
    net: dict,
    label_dropout: float,
    sigma_min: float,
    sigma_max: float | None,
    training: dict,
    seed: int,
    state_dir: str,
    device: torch.device,
    ranks: Ranks | None,
) -> dict:
    """:func:`train_score_model` in one process: the only one (``ranks`` None) or one rank of several, of which
    rank 0 alone holds the state lock and writes the outputs."""
    main = ranks is None or ranks.is_main
    cond = model == "cond"
    data = load_shapes3d(h5)
    idx = load_split(split, data.n)["train"]
    images = torch.from_numpy(data.images(idx)).permute(0, 3, 1, 2)  # a view: the dataset is held once (NHWC)
    labels = torch.from_numpy(data.label_indices[idx]) if cond else None
    if sigma_max is None:
        if main:
            sub = torch.randperm(len(images), generator=torch.Generator().manual_seed(seed))[:8192]
            sigma_max = sigma_max_from_data(images[sub].float().div(255).to(device))
            log.info("sigma_max = %.4f (largest pairwise distance among %d training images)", sigma_max, len(sub))
        if ranks is not None:  # every rank trains with rank 0's value
            shared = [sigma_max]
            torch.distributed.broadcast_object_list(shared, src=0)
            sigma_max = shared[0]
    sde = VESDE(sigma_min, sigma_max)
    net_kwargs = backbone_kwargs(net, data.resolution, cond)
    precond = {"name": net["precond"]}
    if precond["name"] == "edm":
        mean, std = data_statistics(images, "image")
        precond.update(sigma_data=std, data_mean=mean)
        log.info(
            "precond edm: the training images' mean image (mean %.4f) and std about it, sigma_data %.4f",
            sum(mean) / len(mean),
            std,
        )
    settings = train_settings(
        model_training(training, model),
        label_dropout=label_dropout if cond else 0.0,
        seed=derive_seed(seed, "score_model", SCORE_MODELS.index(model)),
    )
    # one trainer per state directory (an orphaned one keeps it until it ends); in a data-parallel job, rank 0
    # holds it for all: the others never write there
    with state_lock(state_dir) if main else contextlib.nullcontext():
        trained, losses, info = fit_score_model(
            images, labels, net_kwargs, precond, sde, settings, state_dir, device, progress=main, ranks=ranks
        )
    n_params = sum(p.numel() for p in trained.parameters())
    if not main:
        return {**info, "n_params": n_params, "sigma_max": sde.sigma_max}
    log.info(
        "%s model: %d parameters, final loss %.4g, %.1f s", model, n_params, losses["loss"].iloc[-1], info["seconds"]
    )
    save_model(
        model_out,
        hparams_out,
        trained,
        {
            "net": net_kwargs,
            "precond": precond,
            "sigma_min": sde.sigma_min,
            "sigma_max": sde.sigma_max,
            "model": model,
            "n_params": n_params,
            "settings": dataclasses.asdict(settings),
            "resolution": data.resolution,
            "n_train": int(len(idx)),
            "dataset": str(data.path),
            "resumed_from": info["resumed_from"],
        },
    )
    write_parquet(losses, loss_out, {"model": model, "seed": settings.seed})
    return {**info, "n_params": n_params, "sigma_max": sde.sigma_max}


def _rank_main(spec_path: str) -> None:
    """One rank of :func:`_launch_ranks`'s job (run by torchrun as ``python -m latent_abstractions.stages.train``)."""
    spec = json.loads(Path(spec_path).read_text())
    # rank 0 logs what the one-process run logs; the others only their warnings and errors (the same output
    # file would otherwise hold every message once per rank)
    setup_logging(None)
    ranks = join_process_group(spec["device"])
    if not ranks.is_main:
        logging.getLogger().setLevel(logging.WARNING)
    torch.set_num_threads(max(1, int(spec["threads"])))
    device = torch.device("cuda", ranks.local_rank) if spec["device"] == "cuda" else torch.device("cpu")
    try:
        try:
            info = _train_score_model(**spec["args"], device=device, ranks=ranks)
        except SegmentEnded as stop:
            info = {"segment_ended": True, "step": stop.step, "steps": stop.steps}
        if ranks.is_main:
            write_json(info, spec["result"])
    except BaseException:
        log.exception("rank %d of %d failed", ranks.rank, ranks.world_size)
        raise
    finally:
        torch.distributed.destroy_process_group()


def train_classifier(
    h5: str,
    split: str,
    model_out: str,
    hparams_out: str,
    accuracy_out: str,
    *,
    width: int,
    steps: int,
    batch_size: int,
    lr: float,
    seed: int,
    device: torch.device,
):
    """The ``train_classifier`` rule: fit on the train split, write held-out accuracy per factor."""
    data = load_shapes3d(h5)
    sp = load_split(split, data.n)

    def tensors(idx):
        return (
            torch.from_numpy(data.images(idx)).permute(0, 3, 1, 2),  # a view: no second copy
            torch.from_numpy(data.label_indices[idx]),
        )

    model = fit_classifier(
        *tensors(sp["train"]),
        [v.tolist() for v in data.levels_present],
        width=width,
        steps=steps,
        batch_size=batch_size,
        lr=lr,
        seed=seed,
        device=device,
    )
    x_test, y_test = tensors(sp["test"])
    table = accuracy_table(model, x_test, y_test, list(data.n_levels_present), seed)
    log.info("held-out accuracy: %s", dict(zip(table["factor"], table["accuracy"].round(4))))
    save_classifier(model_out, hparams_out, model)
    write_parquet(table, accuracy_out, {"steps": steps, "width": width})
    return table


if __name__ == "__main__":
    # through the module's own name, so its loggers and classes are the package's (not __main__'s)
    from latent_abstractions.stages.train import _rank_main as main

    main(sys.argv[1])
