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

Data parallel (``ranks``: one process per GPU, started by torchrun): the global batch stays ``batch_size``.
Every rank draws the whole batch (indices, label dropout, noise levels, noise) from the same seeded stream and
keeps its contiguous slice; each slice's loss is weighted by its share of the batch and DDP sums the gradients,
so the step is the one-process step up to the order of the floating-point sums. Micro-batches (``micro_batch``)
split a rank's slice the same way, accumulating gradients before one optimiser step. Dropout masks, which a rank
draws for its rows alone, come from a stream per rank reseeded at every step (``rng.rank_step_seed``). Rank 0
alone writes checkpoints; a checkpoint resumes on any number of ranks. One process computing its whole batch
in one pass (the default) takes the single-device step, op for op.

Segments: with ``segment_minutes`` set, training stops at the first log row after that much wall time, saves
its state and raises :class:`SegmentEnded`; run again, it resumes there and ends bitwise equal to an
uninterrupted run (one process on the CPU).
"""

from __future__ import annotations

import contextlib
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
from ..rng import rank_step_seed
from ..runtime import Ranks, set_numerics
from .ema import EMA
from .losses import draw_noise, drop_labels, dsm_loss, sigma_sampler, weighting
from .precond import ScoreNetwork, build_score_network
from .sde import VESDE

log = logging.getLogger(__name__)
# Settings that do not change the training trajectory (micro-batches only the order of float sums), so a
# checkpoint resumes across them.
_CADENCE = ("steps", "checkpoint_every", "log_every", "micro_batch", "segment_minutes")


class SegmentEnded(Exception):
    """Training used its wall-clock budget (``segment_minutes``) and saved its state at ``step`` of ``steps``."""

    def __init__(self, step: int, steps: int):
        super().__init__(f"training segment ended at step {step} of {steps}; run again to resume")
        self.step, self.steps = step, steps


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
    micro_batch: int | None = None  # rows per forward/backward pass on one device; None: the device's whole share
    segment_minutes: float | None = None  # wall-clock budget of one run (checked at log rows); None: no limit


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


def _sum_gradients(state, bucket):
    """DDP communication hook: sum the ranks' gradients (each rank's loss already carries its share 1 / world of
    the batch's weight), where DDP's default would average them."""
    import torch.distributed as dist

    work = dist.all_reduce(bucket.buffer(), async_op=True)
    return work.get_future().then(lambda fut: fut.value()[0])


def _slice(batch_size: int, ranks: Ranks | None) -> tuple[int, int]:
    """Rows [lo, hi) of the global batch that this rank computes: contiguous, sizes differ by at most one."""
    if ranks is None:
        return 0, batch_size
    return ranks.rank * batch_size // ranks.world_size, (ranks.rank + 1) * batch_size // ranks.world_size


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
    ranks: Ranks | None = None,
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
        ranks: this process's place in a data-parallel job whose process group it has joined
            (``runtime.join_process_group``); None: the only process.

    Returns:
        (score network with the EMA weights, in eval mode, on ``device``; loss log; info dict with
        ``resumed_from`` step and wall-clock seconds). Every rank returns the same.

    Raises:
        SegmentEnded: when ``settings.segment_minutes`` ran out before the last step (the state is saved).
    """
    if images.dtype != torch.uint8 or images.ndim != 4:
        raise ValueError(f"images must be uint8 (N, C, H, W), got {images.dtype} {tuple(images.shape)}")
    world = ranks.world_size if ranks is not None else 1
    main = ranks is None or ranks.is_main
    if settings.batch_size < world:
        raise ValueError(f"training.batch_size ({settings.batch_size}) must be at least the {world} processes")
    if settings.micro_batch is not None and settings.micro_batch < 1:
        raise ValueError(f"training.micro_batch must be a positive number of rows or null, got {settings.micro_batch}")
    if settings.segment_minutes is not None and not settings.segment_minutes > 0:
        raise ValueError(f"training.segment_minutes must be positive or null, got {settings.segment_minutes}")
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
    lo, hi = _slice(settings.batch_size, ranks)
    micro = min(settings.micro_batch or hi - lo, hi - lo)
    whole_batch = world == 1 and micro == settings.batch_size  # one pass over the batch on the only process
    ddp = None
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel

        # the buffers (Fourier frequencies, data mean) never change: no broadcast before every forward
        ddp = DistributedDataParallel(net, device_ids=[device.index] if cuda else None, forward_sync_buffers=False)
        ddp.register_comm_hook(None, _sum_gradients)
        log.info(
            "rank %d of %d: rows %d-%d of each batch of %d, %d per pass",
            ranks.rank,
            world,
            lo,
            hi - 1,
            settings.batch_size,
            micro,
        )
    wrapped = ddp if ddp is not None else net
    model = torch.compile(wrapped) if (settings.compile and cuda) else wrapped
    n = data.shape[0]
    layout = torch.channels_last if cuda else torch.contiguous_format

    def batch_loss(x0, y, noise=None):
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=cuda and settings.bf16):
            return dsm_loss(
                model,
                x0,
                y,
                sampler=sampler,
                weighting=loss_weight,
                sigma_data=sigma_data,
                generator=gen,
                noise=noise,
            )

    def split_step() -> torch.Tensor:
        """Gradients of the whole batch's loss from this rank's rows, ``micro`` rows per pass; its loss."""
        b = settings.batch_size
        idx = torch.randint(n, (b,), device=device, generator=gen)
        y = drop_labels(lab[idx], settings.label_dropout, gen) if lab is not None else None
        sigma, z = draw_noise(sampler, (b, *data.shape[1:]), device, gen)
        total = torch.zeros((), device=device)
        starts = range(lo, hi, micro)
        for k, a in enumerate(starts):
            e = min(a + micro, hi)
            x0 = data[idx[a:e]].float().div_(255.0).contiguous(memory_format=layout)
            # gradients are reduced over the ranks once, after the last pass
            sync = contextlib.nullcontext() if ddp is None or k == len(starts) - 1 else ddp.no_sync()
            with sync:
                part = batch_loss(x0, y[a:e] if y is not None else None, (sigma[a:e], z[a:e])) * ((e - a) / b)
                part.backward()
            total += part.detach()
        if ddp is not None:
            import torch.distributed as dist

            dist.all_reduce(total)
        return total

    acc = torch.zeros((), device=device)  # loss summed since the last log row (kept on the device)
    acc_n = 0
    fed = 0  # rows this process fed to the loss in this job (the cost plan's evaluations; the model may be compiled)
    if acc_state is not None:
        acc, acc_n = acc_state[0].to(device), acc_state[1]
    t0 = time.perf_counter()
    elapsed0 = rows[-1]["seconds"] if rows else 0.0
    budget = settings.segment_minutes * 60.0 if settings.segment_minutes is not None else None
    net.train()
    bar = tqdm(
        total=settings.steps, initial=step, desc="train", unit="step", disable=not (progress and main), mininterval=5
    )
    while step < settings.steps:
        for group in opt.param_groups:
            group["lr"] = settings.lr * min(1.0, (step + 1) / max(1, settings.warmup_steps))
        if world > 1:  # each rank's own dropout masks (everything else is drawn alike on every rank)
            own = rank_step_seed(settings.seed, ranks.rank, step)
            torch.default_generator.manual_seed(own)
            if cuda:
                torch.cuda.manual_seed(own)  # this rank's GPU only
        if whole_batch:
            idx = torch.randint(n, (settings.batch_size,), device=device, generator=gen)
            x0 = data[idx].float().div_(255.0).contiguous(memory_format=layout)
            y = drop_labels(lab[idx], settings.label_dropout, gen) if lab is not None else None
            loss = batch_loss(x0, y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            loss = loss.detach()
        else:
            opt.zero_grad(set_to_none=True)
            loss = split_step()
        fed += hi - lo
        torch.nn.utils.clip_grad_norm_(net.parameters(), settings.grad_clip)
        opt.step()
        ema.update(net)
        acc += loss
        acc_n += 1
        step += 1
        bar.update(1)
        stop = False
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
            if budget is not None and step < settings.steps:
                stop = _agree(time.perf_counter() - t0 > budget, ranks, device)
        if main and (step % settings.checkpoint_every == 0 or step == settings.steps or stop):
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
        if stop:
            bar.close()
            _log_evaluations(fed, step - resumed_from, ranks, device)
            log.info(
                "stopping after %.1f min (segment_minutes %g) at step %d of %d; the state is saved",
                (time.perf_counter() - t0) / 60,
                settings.segment_minutes,
                step,
                settings.steps,
            )
            raise SegmentEnded(step, settings.steps)
    bar.close()
    evaluations = _log_evaluations(fed, step - resumed_from, ranks, device)
    ema.copy_to(net)
    net.eval()
    info = {"resumed_from": resumed_from, "seconds": time.perf_counter() - t0, "evaluations": evaluations}
    return net, pd.DataFrame(rows, columns=["step", "loss", "lr", "images_seen", "seconds"]), info


def _log_evaluations(fed: int, steps: int, ranks: Ranks | None, device: torch.device) -> int:
    """Log (main process) and return the rows fed to the loss by all processes of this job over ``steps`` steps."""
    if ranks is not None:
        import torch.distributed as dist

        total = torch.tensor(fed, dtype=torch.int64, device=device)
        dist.all_reduce(total)
        fed = int(total)
    if ranks is None or ranks.is_main:
        log.info("network evaluations: %d rows (training, %d steps in this job)", fed, steps)
    return fed


def _agree(over: bool, ranks: Ranks | None, device: torch.device) -> bool:
    """Rank 0's answer to "is the time budget spent?", on every rank (they must stop at the same step)."""
    if ranks is None:
        return over
    import torch.distributed as dist

    flag = torch.tensor(float(over), device=device)
    dist.broadcast(flag, 0)
    return bool(flag.item())


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
