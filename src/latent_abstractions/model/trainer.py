"""Training of the score networks: denoising score matching, Adam with warm-up and clipping, EMA, resume.

Resumable state lives in ``state_dir`` (outside Snakemake's outputs, which Snakemake deletes when a job
dies): ``checkpoint.pt`` holds the model, EMA, optimizer, every RNG state, the step and the loss log so far;
``checkpoint.json`` the hyperparameters it belongs to. A run with the same hyperparameters resumes from it
(also when only the step count grew: a finished run is extended, not restarted); on CPU the resumed run ends
bitwise equal to an uninterrupted one. Checkpoints are written atomically and loaded with ``weights_only``; the one
before the latest is kept as ``checkpoint.prev.pt``, so a latest file damaged on disk (a full or flaky file system)
costs ``checkpoint_every`` steps and a warning instead of the whole run.

On CUDA: bf16 autocast, channels_last, TF32 off unless asked, the dataset held on the GPU as uint8, batches
drawn by a device generator, losses accumulated on the device and read back only every ``log_every`` steps.
"""

from __future__ import annotations

import json
import logging
import os
import pickle
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import pandas as pd
import torch
from tqdm import tqdm

from ..io import atomic_path
from ..runtime import set_numerics
from .ema import EMA
from .losses import drop_labels, dsm_loss, sigma_sampler, weighting
from .precond import ScoreNetwork, build_score_network
from .sde import VESDE

log = logging.getLogger(__name__)
_CADENCE = ("steps", "checkpoint_every", "log_every")  # settings that do not change the training trajectory


@dataclass(frozen=True)
class TrainSettings:
    steps: int
    batch_size: int
    lr: float
    warmup_steps: int
    grad_clip: float
    ema_decay: float
    checkpoint_every: int
    log_every: int
    label_dropout: float = 0.0
    bf16: bool = True
    tf32: bool = False
    compile: bool = False
    weighting: str = "sigma2"  # losses.WEIGHTINGS: "sigma2" (Song et al.), "edm" (Karras et al.) or "geometric"
    sigma_sampling: str = "log_uniform"  # losses.sigma_sampler: "log_uniform" or "log_normal"
    p_mean: float = -1.2  # log-normal noise levels: mean of log sigma
    p_std: float = 1.2  # log-normal noise levels: std of log sigma
    seed: int = 0


def _rng_state(gen: torch.Generator, device: torch.device) -> dict:
    state = {"batch": gen.get_state(), "torch_cpu": torch.get_rng_state()}
    if device.type == "cuda":
        state["torch_cuda"] = torch.cuda.get_rng_state(device)
    return state


def _restore_rng(state: dict, gen: torch.Generator, device: torch.device) -> None:
    gen.set_state(state["batch"])
    torch.set_rng_state(state["torch_cpu"])
    if device.type == "cuda" and "torch_cuda" in state:
        torch.cuda.set_rng_state(state["torch_cuda"], device)


CHECKPOINT, PREVIOUS, DAMAGED = "checkpoint.pt", "checkpoint.prev.pt", "checkpoint.damaged.pt"


def _saved_hparams(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _save_checkpoint(state_dir: Path, hparams: dict, payload: dict) -> None:
    """Write ``payload`` as the latest checkpoint; the latest one of the same run becomes the previous one.

    The new file is complete on disk before the old latest becomes the previous, so every moment has a loadable
    checkpoint. A previous checkpoint of other hyperparameters is deleted: it is no fallback for this run.
    """
    state_dir.mkdir(parents=True, exist_ok=True)
    pt, js, prev = state_dir / CHECKPOINT, state_dir / "checkpoint.json", state_dir / PREVIOUS
    same_run = _saved_hparams(js) == json.loads(json.dumps(hparams, sort_keys=True))
    with atomic_path(pt) as tmp:
        torch.save(payload, tmp)
        if not same_run:
            prev.unlink(missing_ok=True)
        elif pt.exists():
            _keep_as_previous(pt, prev)
    with atomic_path(js) as tmp:
        tmp.write_text(json.dumps(hparams, indent=2, sort_keys=True))


def _keep_as_previous(pt: Path, prev: Path) -> None:
    """Make ``prev`` the file ``pt`` is now, leaving ``pt`` in place (a hard link) until the new file replaces it;
    where the file system has no hard links, ``pt`` is moved (then briefly only ``prev`` exists, which loads too)."""
    link = prev.with_name(f".{prev.name}.tmp-{os.getpid()}")
    link.unlink(missing_ok=True)
    try:
        os.link(pt, link)
        os.replace(link, prev)
    except OSError:
        link.unlink(missing_ok=True)
        os.replace(pt, prev)


def _read_checkpoint(path: Path) -> dict:
    """A checkpoint file's payload; ValueError naming the file if it is unreadable or incomplete."""
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, EOFError, pickle.UnpicklingError) as err:
        reason = (str(err).strip().splitlines() or [type(err).__name__])[0][:160]  # torch's texts run to pages
        raise ValueError(f"{path}: unreadable training checkpoint ({reason})") from err
    missing = {"model", "opt", "ema", "rng", "step", "log"} - set(ckpt) if isinstance(ckpt, dict) else {"all keys"}
    if missing:
        raise ValueError(f"{path}: training checkpoint lacks {sorted(missing)}")
    return ckpt


def _load_checkpoint(state_dir: Path, hparams: dict, max_step: int) -> dict | None:
    """The latest good checkpoint in ``state_dir`` if it belongs to ``hparams`` and is not past ``max_step``, else
    None. A damaged latest file is moved aside (``checkpoint.damaged.pt``) and the previous one used, with a warning.

    Raises:
        ValueError: if no checkpoint of this run can be read (naming the files and how to start over).
    """
    pt, js, prev = state_dir / CHECKPOINT, state_dir / "checkpoint.json", state_dir / PREVIOUS
    if not (js.exists() and (pt.exists() or prev.exists())):
        return None
    if _saved_hparams(js) != json.loads(json.dumps(hparams, sort_keys=True)):
        log.warning("%s: checkpoint belongs to other hyperparameters; starting from scratch", state_dir)
        return None
    try:
        ckpt = _read_checkpoint(pt) if pt.exists() else None
    except ValueError as err:
        if not prev.exists():
            raise ValueError(
                f"{err}; no previous checkpoint to fall back to: delete {state_dir} to start over"
            ) from err
        os.replace(pt, state_dir / DAMAGED)
        log.warning("%s; moved to %s, resuming from the previous checkpoint %s", err, DAMAGED, prev)
        ckpt = None
    if ckpt is None:
        try:
            ckpt = _read_checkpoint(prev)
        except ValueError as err:
            raise ValueError(f"{err}, and the latest is damaged or missing: delete {state_dir} to start over") from err
    if int(ckpt["step"]) > max_step:
        log.warning(
            "%s: checkpoint is at step %d, past the %d steps asked for; starting from scratch",
            state_dir,
            int(ckpt["step"]),
            max_step,
        )
        return None
    return ckpt


def fit_score_model(
    images: torch.Tensor,
    labels: torch.Tensor | None,
    net_kwargs: dict,
    precond: dict,
    sde: VESDE,
    settings: TrainSettings,
    state_dir: str | Path,
    device: torch.device,
    progress: bool = True,
) -> tuple[ScoreNetwork, pd.DataFrame, dict]:
    """Train an NCSN++ score network, resuming from ``state_dir`` when it holds a matching checkpoint.

    Args:
        images: uint8 training images (N, 3, H, W), any strides (an NHWC array permuted is held once, and
            stays channels_last on the GPU).
        labels: (N, 6) official level indices for a conditional model, or None.
        net_kwargs: NCSNpp constructor arguments (``n_levels`` set for a conditional model).
        precond: the noise parametrisation around it (``precond.build_score_network``).
        sde: the VE SDE.
        settings: optimisation settings.
        state_dir: where resumable checkpoints live.
        device: where to train.

    Returns:
        (score network with the EMA weights, in eval mode, on ``device``; loss log; info dict with
        ``resumed_from`` step and wall-clock seconds).
    """
    if images.dtype != torch.uint8 or images.ndim != 4:
        raise ValueError(f"images must be uint8 (N, C, H, W), got {images.dtype} {tuple(images.shape)}")
    state_dir = Path(state_dir)
    cuda = device.type == "cuda"
    if cuda:
        set_numerics(tf32=settings.tf32, cudnn_benchmark=False)
    # What a checkpoint must share to be resumed. The step count and the logging/checkpoint cadence are left
    # out: they do not change the trajectory, so a run extended to more steps continues its last checkpoint.
    hparams = {
        "net": net_kwargs,
        "precond": precond,
        "sigma_min": sde.sigma_min,
        "sigma_max": sde.sigma_max,
        "settings": {k: v for k, v in asdict(settings).items() if k not in _CADENCE},
        "n_images": int(images.shape[0]),
        "device": device.type,
    }

    torch.manual_seed(settings.seed)
    net = build_score_network(net_kwargs, precond).to(device)
    if cuda:
        net = net.to(memory_format=torch.channels_last)
    opt = torch.optim.Adam(net.parameters(), lr=settings.lr, fused=True)  # CPU too: ~6% faster steps
    ema = EMA(net, settings.ema_decay)
    gen = torch.Generator(device=device).manual_seed(settings.seed)
    sampler = sigma_sampler(settings.sigma_sampling, sde, p_mean=settings.p_mean, p_std=settings.p_std)
    # the weighting's data std: the EDM parametrisation's, else Karras et al.'s default 0.5
    loss_weight, sigma_data = weighting(settings.weighting), precond.get("sigma_data", 0.5)
    rows: list[dict] = []
    step = 0
    ckpt = _load_checkpoint(state_dir, hparams, settings.steps)
    if ckpt is not None and set(ckpt["model"]) != set(net.state_dict()):
        log.warning(
            "%s: checkpoint was written by another version of the network (its parameters differ); "
            "starting from scratch",
            state_dir,
        )
        ckpt = None
    if ckpt is not None:
        net.load_state_dict(ckpt["model"], strict=True)
        opt.load_state_dict(ckpt["opt"])
        ema.load_state_dict({k: v.to(device) for k, v in ckpt["ema"].items()})
        _restore_rng(ckpt["rng"], gen, device)
        step, rows = int(ckpt["step"]), list(ckpt["log"])
        acc_state = (ckpt["acc"], int(ckpt["acc_n"])) if "acc" in ckpt else None
        log.info("resumed from step %d of %d (%s)", step, settings.steps, state_dir)
    else:
        acc_state = None
        log.info("starting from scratch (%d steps)", settings.steps)
    resumed_from = step

    data = images.to(device)
    lab = labels.to(device) if labels is not None else None
    model = torch.compile(net) if (settings.compile and cuda) else net
    n = data.shape[0]
    layout = torch.channels_last if cuda else torch.contiguous_format
    acc = torch.zeros((), device=device)  # loss summed since the last log row (kept on the device)
    acc_n = 0
    if acc_state is not None:
        acc, acc_n = acc_state[0].to(device), acc_state[1]
    t0 = time.perf_counter()
    elapsed0 = rows[-1]["seconds"] if rows else 0.0
    net.train()
    bar = tqdm(total=settings.steps, initial=step, desc="train", unit="step", disable=not progress, mininterval=5)
    while step < settings.steps:
        for group in opt.param_groups:
            group["lr"] = settings.lr * min(1.0, (step + 1) / max(1, settings.warmup_steps))
        idx = torch.randint(n, (settings.batch_size,), device=device, generator=gen)
        x0 = data[idx].float().div_(255.0).contiguous(memory_format=layout)
        y = drop_labels(lab[idx], settings.label_dropout, gen) if lab is not None else None
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=cuda and settings.bf16):
            loss = dsm_loss(model, x0, y, sampler=sampler, weighting=loss_weight, sigma_data=sigma_data, generator=gen)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), settings.grad_clip)
        opt.step()
        ema.update(net)
        acc += loss.detach()
        acc_n += 1
        step += 1
        bar.update(1)
        if step % settings.log_every == 0 or step == settings.steps:
            mean = float(acc) / acc_n  # the only host-device sync, every log_every steps
            rows.append(
                {
                    "step": step,
                    "loss": mean,
                    "lr": opt.param_groups[0]["lr"],
                    "images_seen": step * settings.batch_size,
                    "seconds": elapsed0 + time.perf_counter() - t0,
                }
            )
            bar.set_postfix(loss=f"{mean:.4g}")
            acc.zero_()
            acc_n = 0
        if step % settings.checkpoint_every == 0 or step == settings.steps:
            _save_checkpoint(
                state_dir,
                hparams,
                {
                    "model": net.state_dict(),
                    "opt": opt.state_dict(),
                    "ema": ema.state_dict(),
                    "rng": _rng_state(gen, device),
                    "step": step,
                    "log": rows,
                    "acc": acc.detach().cpu(),
                    "acc_n": acc_n,
                },
            )
    bar.close()
    ema.copy_to(net)
    net.eval()
    info = {"resumed_from": resumed_from, "seconds": time.perf_counter() - t0}
    return net, pd.DataFrame(rows, columns=["step", "loss", "lr", "images_seen", "seconds"]), info


def data_statistics(images: torch.Tensor, per: str = "image", chunk: int = 4096) -> tuple[list[float], float]:
    """The mean of uint8 (N, C, H, W) images in [0, 1] and the std about it (pooled over pixels).

    Args:
        per: "image": the mean image (C * H * W values, channel-major); "channel": one mean per channel.

    Computed in float64 over every image (chunked), rounded to 6 decimals so that the values stored in the
    model's hyperparameters are short and exact.
    """
    if per not in ("image", "channel"):
        raise ValueError(f"per must be 'image' or 'channel', got {per!r}")
    n = images.shape[0]
    s1 = torch.zeros(images.shape[1:], dtype=torch.float64)
    s2 = torch.zeros(images.shape[1:], dtype=torch.float64)
    for i in range(0, n, chunk):
        x = images[i : i + chunk].double().div(255.0)
        s1 += x.sum(0)
        s2 += x.pow(2).sum(0)
    if per == "channel":
        s1, s2, count = s1.sum((1, 2)), s2.sum((1, 2)), n * images[0, 0].numel()
    else:
        count = n
    mean = s1 / count
    var = (s2 / count - mean**2).mean()
    return [round(float(m), 6) for m in mean.reshape(-1)], round(float(var.clamp_min(1e-12).sqrt()), 6)
