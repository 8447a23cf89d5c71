"""The cost plan of a configuration: what every rule will cost, before anything runs.

Per rule: Snakemake jobs, network evaluations, FLOPs, peak accelerator memory, peak host memory, GPU-hours on a
named accelerator, and the Slurm ``runtime`` and ``mem_mb`` to request; over the DAG, the total GPU-hours and the
critical path with N GPUs. ``workflow/rules/common.smk`` takes every compute rule's resources from here, and the
measurement stages size their batches with :func:`fit_batch` from the same per-row memory.

    python -m latent_abstractions.plan --configfile config/paper.yaml [--gpus N] [--device-memory-gb 80] [--json]

Where each number comes from:

- Evaluations (rows through a network, one image each): the stages' own formulas (the samplers' time grids from
  ``model.sampling`` and ``measure.forking``, the MI strata of ``measure.mutual_info``); ``tests/test_plan.py``
  compares them with the forward calls counted during real runs.
- FLOPs: ``torch.utils.flop_counter`` over the network itself on one row (forward; forward and backward for
  training). It counts the matrix products and convolutions, the usual basis of a model-FLOPs utilisation.
- Device memory: the real forward runs on the ``meta`` device (every op with its true shapes and dtypes, no
  arithmetic, so the paper network costs a second) under a dispatch mode that tracks the tensor storages alive
  after every op; at batch 1 and 2, which separates the per-row part from the fixed one (the peak is exactly
  linear in the batch). Under no_grad for inference; forward and backward with autograd for training, in fp32
  (bf16 autocast keeps smaller activations, so this is an upper bound). Kernel workspaces (cuDNN, attention) and
  the CUDA context are not tensors: :data:`DEVICE_RESERVE_GIB` and :data:`DEVICE_HEADROOM` cover them.
- Host memory: the arrays each stage holds (listed in each rule's function below) and the process itself.
- Time: FLOPs / (the accelerator's dense peak at the rule's precision x :data:`MFU`), plus dataset reads at
  :data:`READ_MB_S`; CPU-side work at :data:`CPU_CORE_TFLOPS` per thread. These are assumptions; every plan
  prints them. Training on G GPUs (``training.gpus``) takes work / (G x :data:`DDP_EFFICIENCY`); the per-tau
  rules split into ``tau_shards`` jobs over contiguous parts of the tau grid.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import hashlib
import heapq
import importlib.metadata
import json
import logging
import math
import os
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np

log = logging.getLogger(__name__)

GIB = 2**30
GB = 1e9

# --- assumptions (printed with every plan) ---------------------------------------------------------------------


@dataclass(frozen=True)
class Accelerator:
    """A device the rules may run on: its memory and its dense peak throughput per precision (TFLOP/s)."""

    name: str
    label: str
    memory_gb: float
    tflops: Mapping[str, float]
    gpu: bool = True


#: Dense peaks from the vendors' data sheets (no sparsity). fp64 is the tensor-core rate the GEMMs reach.
ACCELERATORS = {
    "h100": Accelerator(
        "h100", "NVIDIA H100 SXM5 80GB", 80.0, {"bf16": 989.4, "tf32": 494.7, "fp32": 66.9, "fp64": 66.9}
    ),
    "h200": Accelerator(
        "h200", "NVIDIA H200 SXM 141GB", 141.0, {"bf16": 989.4, "tf32": 494.7, "fp32": 66.9, "fp64": 66.9}
    ),
    "a100": Accelerator(
        "a100", "NVIDIA A100 SXM4 80GB", 80.0, {"bf16": 312.0, "tf32": 156.0, "fp32": 19.5, "fp64": 19.5}
    ),
    # no GPU: the jobs' networks run on their CPU threads (bf16 autocast and TF32 are CUDA-only), tensors in host memory
    "cpu": Accelerator(
        "cpu", "CPU threads of the job", 8.0, {"bf16": 0.1, "tf32": 0.1, "fp32": 0.1, "fp64": 0.05}, gpu=False
    ),
}
#: Fraction of the dense peak a rule sustains (model-FLOPs utilisation), every precision.
MFU = 0.4
#: Data-parallel training on G GPUs runs at G x this of one GPU's rate (gradient all-reduce, stragglers).
DDP_EFFICIENCY = 0.9
#: Dense peak of one CPU thread (AVX-512 class), for the CPU rules and the CPU-side parts of the GPU rules.
CPU_CORE_TFLOPS = {"fp32": 0.1, "fp64": 0.05}
#: HDF5 read and gzip decompression rate of one process, MB/s.
READ_MB_S = 100.0
#: Time the offline renderer takes per pixel (rendered images x side^2), microseconds.
RENDER_US_PER_PIXEL = 2.0
#: Fraction of the device memory the tensors of a batch may fill, and the part of the rest not held by tensors
#: at all (CUDA context, cuDNN and attention workspaces); the allocator's fragmentation lives in the remainder.
DEVICE_HEADROOM = 0.85
DEVICE_RESERVE_GIB = 1.0
#: ``device_memory_gb: auto`` without CUDA: the batches' tensors live in host memory, capped at this (GB) and at
#: a quarter of the machine's memory.
HOST_CAP_GB = 8.0
#: Resident memory of a job's process before it loads anything (interpreter, torch; with CUDA, its libraries).
PROCESS_GIB = {"cpu": 0.5, "gpu": 3.0, "no_torch": 0.4}
#: Requests: runtime = SAFETY x the prediction + STARTUP, rounded up to 10 min, at least FLOOR; mem_mb = SAFETY x
#: the predicted peak host memory, rounded up to 1,000 MB, at least 2,000.
RUNTIME_SAFETY = 1.5
RUNTIME_STARTUP_MIN = 10
RUNTIME_FLOOR_MIN = 30
HOST_SAFETY = 1.25
MEM_MB_FLOOR = 2000

#: Image-sized float32 buffers per batch row that a stage holds besides the network's own tensors (the sampler's
#: state, noise and score; MI's repeated inputs and its float64 score differences; ...).
ROW_BUFFERS = {"sample_images": 4, "extract_features": 2, "estimate_mutual_information": 8, "run_forking": 4}
#: Rows per call of ``classifier.predict`` (the forks' and samples' labels).
CLASSIFIER_ROWS = 512


# --- measuring a network: FLOPs and live tensor memory -------------------------------------------------------------


@dataclass(frozen=True)
class NetCost:
    """One network use measured on the meta device.

    Attributes:
        flops: FLOPs per row (forward; forward + backward for training).
        row_bytes: peak live tensor bytes added by each row of the batch.
        fixed_bytes: the batch-independent part of the peak, parameters and buffers included.
        param_bytes: bytes of the parameters alone (for optimiser state and EMA copies).
        channels: feature maps only: {name: channels} of the maps returned.
    """

    flops: float
    row_bytes: int
    fixed_bytes: int
    param_bytes: int
    channels: Mapping[str, int] = field(default_factory=dict)

    def peak(self, rows: int) -> int:
        return self.fixed_bytes + rows * self.row_bytes


def _live_storage_mode(ignore=()):
    """A dispatch mode recording the peak bytes of the tensor storages alive after any op (views share storage),
    leaving out the storages of the tensors ``ignore`` (a network's parameters, which ops may return views of)."""
    import torch
    from torch.multiprocessing.reductions import StorageWeakRef
    from torch.utils._python_dispatch import TorchDispatchMode
    from torch.utils._pytree import tree_leaves

    class LiveStorage(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.live: dict[int, tuple[StorageWeakRef, int]] = {}
            self.ignore = {t.untyped_storage()._cdata for t in ignore}
            self.bytes = 0  # an upper bound between sweeps: storages freed since the last one still count
            self.peak = 0

        def _sweep(self):
            for key in [k for k, (ref, _) in self.live.items() if ref.expired()]:
                self.bytes -= self.live.pop(key)[1]

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            for t in tree_leaves(out):
                if not isinstance(t, torch.Tensor):
                    continue
                st = t.untyped_storage()
                if st._cdata in self.ignore:
                    continue
                known = self.live.get(st._cdata)
                if known is not None and not known[0].expired():
                    continue
                if known is not None:  # a freed storage's address reused
                    self.bytes -= known[1]
                self.live[st._cdata] = (StorageWeakRef(st), st.nbytes())
                self.bytes += st.nbytes()
            if self.bytes > self.peak:  # only a new maximum needs the exact count
                self._sweep()
                self.peak = max(self.peak, self.bytes)
            return out

    return LiveStorage()


def run_network(
    kind: str, kwargs: dict, use: str, batch: int, *, layers: Sequence[str] = (), flops: bool = False, device="meta"
) -> tuple[int, float, dict]:
    """(peak live tensor bytes, FLOPs, {feature map: channels}) of one use of a network on one batch.

    ``kind``: "score" (an NCSNpp from its hparams ``kwargs``; a conditional one gets all-null labels) or
    "classifier" (an AttributeClassifier). ``use``: "forward" or "features" under no_grad, or "train" (forward and
    backward of the loss with autograd). The inputs are created inside the count; the network's parameters and
    buffers are not counted. ``device`` "meta" runs no arithmetic; any other device runs the real kernels.
    """
    import torch
    import torch.nn.functional as F
    from torch.utils.flop_counter import FlopCounterMode

    from .model.classifier import AttributeClassifier
    from .model.networks import NCSNpp

    device = torch.device(device)
    with torch.device(device):
        net = NCSNpp(**kwargs) if kind == "score" else AttributeClassifier(**kwargs)
    net.train(use == "train")
    res = kwargs["img_resolution"] if kind == "score" else kwargs["resolution"]
    n_levels = kwargs.get("n_levels") if kind == "score" else None
    counter = FlopCounterMode(display=False) if flops else contextlib.nullcontext()
    mode = _live_storage_mode([*net.parameters(), *net.buffers()])
    channels = {}
    with counter, mode:
        x = torch.zeros(batch, kwargs.get("in_channels", 3), res, res, device=device)
        sigma = torch.ones(batch, device=device)
        labels = torch.full((batch, len(n_levels)), -1, dtype=torch.long, device=device) if n_levels else None
        if use == "train":
            with torch.enable_grad():
                if kind == "score":  # the denoising loss on x = x0 + sigma z
                    z = torch.zeros_like(x)
                    out = net(x + sigma[:, None, None, None] * z, sigma, labels)
                    loss = (sigma[:, None, None, None] * out + z).pow(2).sum((1, 2, 3)).mean()
                else:
                    y = torch.zeros(batch, dtype=torch.long, device=device)
                    loss = sum(F.cross_entropy(lg, y) for lg in net(x))
                loss.backward()
                del loss
        else:
            with torch.no_grad():
                if use == "features":
                    feats = net.forward_features(x, sigma, list(layers), labels)
                    channels = {name: int(h.shape[1]) for name, h in feats.items()}
                    del feats
                else:
                    out = net(x, sigma, labels) if kind == "score" else net(x)
                    del out
    return mode.peak, (counter.get_total_flops() if flops else 0.0), channels


def _cache_file(kind: str, key: str, use: str, layers: tuple[str, ...]) -> Path | None:
    """Where a measurement is cached across processes: LATENT_ABSTRACTIONS_CACHE (default ~/.cache/
    latent_abstractions; "off": nowhere), one file per network shape, use, torch version and measuring code."""
    root = os.environ.get("LATENT_ABSTRACTIONS_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "latent_abstractions"
    )
    if root == "off":
        return None
    here = Path(__file__).resolve().parent
    h = hashlib.sha256(json.dumps([kind, key, use, layers, importlib.metadata.version("torch")]).encode())
    for src in ("plan.py", "model/networks.py", "model/layers.py", "model/classifier.py"):
        h.update((here / src).read_bytes())
    return Path(root) / "network_costs" / f"{kind}-{use}-{h.hexdigest()[:24]}.json"


@functools.lru_cache(maxsize=None)
def _measure(kind: str, key: str, use: str, layers: tuple[str, ...]) -> NetCost:
    path = _cache_file(kind, key, use, layers)
    if path is not None:
        with contextlib.suppress(OSError, ValueError, TypeError):
            return NetCost(**json.loads(path.read_text()))
    cost = _measure_now(kind, key, use, layers)
    if path is not None:
        with contextlib.suppress(OSError):
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.{os.getpid()}")
            tmp.write_text(json.dumps(asdict(cost)))
            os.replace(tmp, path)
    return cost


def _measure_now(kind: str, key: str, use: str, layers: tuple[str, ...]) -> NetCost:
    import torch

    from .model.classifier import AttributeClassifier
    from .model.networks import NCSNpp

    kwargs = json.loads(key)
    with torch.random.fork_rng(devices=[]):  # building a network draws from the global generator: leave it be
        p1, flops, channels = run_network(kind, kwargs, use, 1, layers=layers, flops=True)
        p2, _, _ = run_network(kind, kwargs, use, 2, layers=layers)
        with torch.device("meta"):
            net = NCSNpp(**kwargs) if kind == "score" else AttributeClassifier(**kwargs)
    params = sum(p.numel() * p.element_size() for p in net.parameters())
    buffers = sum(b.numel() * b.element_size() for b in net.buffers())
    row = p2 - p1
    return NetCost(float(flops), int(row), int(p1 - row + params + buffers), int(params), channels)


def measure_network(net_kwargs: dict, use: str = "forward", layers: Sequence[str] = ()) -> NetCost:
    """FLOPs and live memory of one use of the NCSN++ built from ``net_kwargs`` (its hparams), cached per shape.

    ``use``: "forward" (inference, no_grad), "features" (``forward_features(layers)``, no_grad) or "train"
    (forward and backward of the denoising loss, fp32). A conditional network gets all-null labels.
    """
    if use not in ("forward", "features", "train"):
        raise ValueError(f"use must be 'forward', 'features' or 'train', got {use!r}")
    kwargs = dict(net_kwargs)
    if kwargs.get("data_mean") is not None:  # its values do not change the cost: one cache entry per shape
        kwargs["data_mean"] = [0.0] * len(kwargs["data_mean"])
    return _measure("score", json.dumps(kwargs, sort_keys=True), use, tuple(layers) if use == "features" else ())


def measure_classifier(resolution: int, width: int, use: str = "forward") -> NetCost:
    """FLOPs and live memory of the attribute classifier (``use`` "forward" or "train"), cached per shape."""
    from .data.factors import N_LEVELS

    kwargs = {"resolution": resolution, "width": width, "levels_present": [list(range(n)) for n in N_LEVELS]}
    return _measure("classifier", json.dumps(kwargs, sort_keys=True), use, ())


# --- batches from the device-memory budget (used by the stages at run time) -------------------------------------


def budget_bytes(device_memory_gb: float, gpu: bool) -> int:
    """Tensor bytes a batch may fill on a device of ``device_memory_gb`` GB (headroom and, on a GPU, the reserve)."""
    reserve = DEVICE_RESERVE_GIB * GIB if gpu else 0
    return int(device_memory_gb * GB * DEVICE_HEADROOM - reserve)


def host_cap_gb() -> float:
    """``device_memory_gb: auto`` without CUDA: HOST_CAP_GB, or a quarter of this machine's memory if less."""
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / GB
    except (ValueError, OSError, AttributeError):
        return HOST_CAP_GB
    return min(HOST_CAP_GB, total / 4)


def resolve_device_memory_gb(device_memory_gb: float | str, device) -> float:
    """The ``device_memory_gb`` config value for ``device``: a number as given; "auto": the CUDA device's memory,
    or :func:`host_cap_gb` on the CPU."""
    if device_memory_gb != "auto":
        value = float(device_memory_gb)
        if not value > 0:
            raise ValueError(f"device_memory_gb = {device_memory_gb!r}: expected a number of GB > 0 or 'auto'")
        return value
    if getattr(device, "type", str(device)) == "cuda":
        import torch

        return torch.cuda.get_device_properties(device).total_memory / GB
    return host_cap_gb()


def rows_that_fit(cost: NetCost, budget: int, *, row_extra: int = 0, fixed_extra: int = 0) -> int:
    """The most batch rows whose tensors stay within ``budget`` bytes (0 if not even one)."""
    free = budget - cost.fixed_bytes - fixed_extra
    return max(0, free // (cost.row_bytes + row_extra))


def fit_batch(
    configured: int,
    *,
    key: str,
    cost: NetCost,
    device_memory_gb: float | str,
    device,
    row_extra: int = 0,
    fixed_extra: int = 0,
    min_rows: int = 1,
) -> int:
    """Rows per network call: the configured value (an upper bound) or fewer, so that the batch fits the budget.

    Args:
        configured: the config's batch size (``key`` names it in messages).
        cost: the network use (:func:`measure_network`); row_extra / fixed_extra: the stage's own device bytes per
            row and fixed.
        device_memory_gb: the config value (a number or "auto", see :func:`resolve_device_memory_gb`).
        device: the torch device the stage runs on.
        min_rows: the fewest rows a call can have (MI: one image's rows).

    Raises:
        ValueError: naming ``device_memory_gb`` and ``key`` when not even ``min_rows`` rows fit.
    """
    gb = resolve_device_memory_gb(device_memory_gb, device)
    gpu = getattr(device, "type", str(device)) == "cuda"
    budget = budget_bytes(gb, gpu)
    fit = rows_that_fit(cost, budget, row_extra=row_extra, fixed_extra=fixed_extra)
    if fit < min_rows:
        need = cost.fixed_bytes + fixed_extra + min_rows * (cost.row_bytes + row_extra)
        raise ValueError(
            f"device_memory_gb = {device_memory_gb!r} ({gb:.1f} GB): {key} needs {need / GIB:.2f} GiB for "
            f"{min_rows} row(s) but the budget is {budget / GIB:.2f} GiB ({DEVICE_HEADROOM:.0%} of the device"
            f"{', less the CUDA reserve' if gpu else ''}); allowed: a larger device_memory_gb"
        )
    rows = min(configured, fit)
    if rows < configured:
        log.info(
            "%s = %d rows would need %.2f GiB; %d rows fit the %.2f GiB budget (device_memory_gb = %s, %.1f GB)",
            key,
            configured,
            (cost.fixed_bytes + fixed_extra + configured * (cost.row_bytes + row_extra)) / GIB,
            rows,
            budget / GIB,
            device_memory_gb,
            gb,
        )
    return rows


def stage_batch(
    configured: int,
    *,
    key: str,
    rule: str,
    net_hparams: dict,
    device_memory_gb: float | str,
    device,
    use: str = "forward",
    layers: Sequence[str] = (),
    fixed_extra: int = 0,
    min_rows: int = 1,
) -> int:
    """:func:`fit_batch` for a stage that runs the saved score network ``net_hparams`` (its hparams.json "net"),
    with the stage's own per-row buffers (:data:`ROW_BUFFERS` of ``rule``)."""
    res, channels = net_hparams["img_resolution"], net_hparams.get("in_channels", 3)
    return fit_batch(
        configured,
        key=key,
        cost=measure_network(net_hparams, use, layers),
        device_memory_gb=device_memory_gb,
        device=device,
        row_extra=ROW_BUFFERS[rule] * 4 * channels * res**2,
        fixed_extra=fixed_extra,
        min_rows=min_rows,
    )


# --- the stages' counts ------------------------------------------------------------------------------------------


def sampler_calls(n_steps: int, corrector: bool, denoise: bool = True) -> int:
    """Network calls per sample of ``model.sampling.sample`` over ``n_steps`` grid intervals (pc: corrector then
    predictor per interval; the Tweedie denoising call at the last grid point)."""
    return n_steps * (2 if corrector else 1) + (1 if denoise else 0)


def sampling_evaluations(n_samples: int, steps: int, method: str, corrector: bool) -> int:
    """Score-network rows of ``sample_images``: every sample over ``time_grid(steps)``, denoised at the end."""
    return n_samples * sampler_calls(steps, corrector and method == "pc")


def feature_evaluations(n_images: int, n_taus: int) -> int:
    """``forward_features`` rows of ``extract_features``: every image once per tau."""
    return n_images * n_taus


def mi_intervals(taus: np.ndarray, n_times: int) -> tuple[int, int]:
    """(tau intervals, strata per interval) of ``mutual_info.mi_curves``."""
    intervals = len(taus) - 1 if taus[0] == 0 else len(taus)
    return intervals, max(1, n_times // intervals)


def mi_evaluations(n_images: int, n_factors: int, taus: np.ndarray, n_times: int, intervals=None) -> int:
    """Conditional-network rows of ``estimate_mutual_information``: per image and stratum, the unconditional row
    and one per measurable factor (``intervals``: how many of the tau intervals; default all)."""
    total, per = mi_intervals(np.asarray(taus), n_times)
    return n_images * (n_factors + 1) * per * (total if intervals is None else intervals)


def forking_evaluations(
    n_base: int, n_forks: int, steps: int, taus: np.ndarray, method: str, corrector: bool
) -> tuple[int, list[int]]:
    """(base-path rows, fork rows per tau) of ``run_forking``.

    The base paths run the whole of ``path_grid(steps, taus)`` without the final denoising; the forks at tau j
    continue from its grid point to the end and are denoised there (a fork at the last point: that call alone).
    """
    from .measure.forking import fork_grid_indices, path_grid

    grid = path_grid(steps, np.asarray(taus))
    corr = corrector and method == "pc"
    base = n_base * sampler_calls(len(grid) - 1, corr, denoise=False)
    forks = [n_base * n_forks * sampler_calls(len(grid) - 1 - i, corr) for i in fork_grid_indices(grid, taus)]
    return base, forks


# --- the plan ------------------------------------------------------------------------------------------------------


@dataclass
class Work:
    """What one job does: device FLOPs per precision, CPU FLOPs per precision, bytes read from the dataset, and
    seconds of work not counted in FLOPs."""

    device: dict[str, float] = field(default_factory=dict)
    cpu: dict[str, float] = field(default_factory=dict)
    read_bytes: float = 0.0
    seconds: float = 0.0

    def add(self, where: str, precision: str, flops: float) -> Work:
        target = self.device if where == "device" else self.cpu
        target[precision] = target.get(precision, 0.0) + float(flops)
        return self


@dataclass
class Job:
    """One Snakemake job of a rule: its work, GPUs, and the jobs it waits for (``rule:name``)."""

    rule: str
    name: str
    work: Work
    gpus: int
    deps: tuple[str, ...] = ()

    @property
    def id(self) -> str:
        return f"{self.rule}:{self.name}"


@dataclass
class RulePlan:
    """The plan of one rule (per-job values are the largest of its jobs)."""

    rule: str
    jobs: int
    evaluations: int
    tflop: float
    gpu_hours: float
    peak_device_gib: float
    peak_host_gib: float
    runtime_min: int
    mem_mb: int
    gpus: int  # per job
    batch: int | None  # rows per network call
    precision: str
    hours_per_job: float


@dataclass
class Plan:
    rules: list[RulePlan]
    total_gpu_hours: float
    critical_path_hours: float
    assumptions: dict

    def as_dict(self) -> dict:
        return {
            "rules": [asdict(r) for r in self.rules],
            "total_gpu_hours": self.total_gpu_hours,
            "critical_path_hours": self.critical_path_hours,
            "assumptions": self.assumptions,
        }


class _Context:
    """The config, the dataset's shape and the accelerator, as every rule's function needs them."""

    def __init__(self, config, acc, device_memory_gb, gpus, tau_shards, training_gpus, threads, mfu):
        from .data.split import split_sizes
        from .preflight import dataset_shape
        from .taus import tau_grid

        self.cfg, self.acc, self.mfu, self.threads = config, acc, mfu, threads
        self.gpus = gpus
        self.res, self.n_images, problem = dataset_shape(config)
        if problem:
            raise ValueError(problem)
        self.n_train, self.n_test = split_sizes(self.n_images, config["dataset"]["test_fraction"])
        self.levels = _levels_present(config)
        t = config["taus"]
        self.taus = tau_grid(t["start"], t["stop"], t["n"])
        shards = max(1, min(int(tau_shards), len(self.taus)))
        self.shards = [s for s in np.array_split(np.arange(len(self.taus)), shards)]
        self.training_gpus = max(1, int(training_gpus))
        self.device_memory_gb = device_memory_gb
        self.budget = budget_bytes(device_memory_gb, acc.gpu)
        self.pixels = 3 * self.res**2  # uint8 bytes of one image
        self.image = 4 * self.pixels  # float32 bytes of one image
        self.process = PROCESS_GIB["gpu" if acc.gpu else "cpu"] * GIB

    def score_kwargs(self, cond: bool) -> dict:
        """The backbone hparams ``stages.train`` gives NCSNpp for this config. The noise parametrisation around it
        (model/precond.py) adds a few elementwise image-sized tensors per row, under 1% of a row's activations at
        every width here, and is not counted."""
        from .model.networks import backbone_kwargs

        return backbone_kwargs(self.cfg["score_model"], self.res, cond)

    def device_peak(self, tensor_bytes: float) -> float:
        """Predicted device peak: the tensors and, on a GPU, the reserve."""
        return tensor_bytes + (DEVICE_RESERVE_GIB * GIB if self.acc.gpu else 0)

    def fit(self, configured: int, cost: NetCost, row_extra=0, fixed_extra=0, min_rows=1) -> int:
        return max(
            min_rows, min(configured, rows_that_fit(cost, self.budget, row_extra=row_extra, fixed_extra=fixed_extra))
        )

    def hours(self, work: Work, gpus: int) -> float:
        """Wall-clock hours of ``work`` on ``gpus`` GPUs (more than one: data-parallel); with the "cpu" accelerator
        the device work runs on the job's threads."""
        device_s = sum(f / (self.acc.tflops[p] * 1e12 * self.mfu) for p, f in work.device.items())
        if not self.acc.gpu:
            device_s /= self.threads
        elif gpus > 1:
            device_s /= gpus * DDP_EFFICIENCY
        cpu_s = sum(f / (CPU_CORE_TFLOPS[p] * 1e12 * self.mfu * self.threads) for p, f in work.cpu.items())
        return (device_s + cpu_s + work.read_bytes / (READ_MB_S * 1e6) + work.seconds) / 3600


def _levels_present(config: dict) -> list[int]:
    """Levels present per factor: the rendered counts, the official grid's, or those of the user's file."""
    from .data.factors import FACTOR_NAMES as FACTOR_KEYS
    from .data.factors import N_LEVELS

    ds = config["dataset"]
    if ds["source"] == "synthetic":
        return [ds["synthetic"]["levels"][k] for k in FACTOR_KEYS]
    if ds["source"] == "path":
        import h5py

        try:
            with h5py.File(ds["path"], "r") as f:
                labels = f["labels"][...]
            return [len(np.unique(labels[:, k])) for k in range(labels.shape[1])]
        except (OSError, KeyError, IndexError):
            # a file the plan cannot read is planned as the official grid: the dataset rules validate the file
            # and say what is wrong with it in one line, where the user looks (the rule's log)
            return list(N_LEVELS)
    return list(N_LEVELS)


@dataclass
class _RuleCost:
    jobs: list[Job]
    evaluations: int
    flops: float
    device_bytes: float  # tensors, per job (the largest)
    host_bytes: float  # per job (the largest)
    batch: int | None
    precision: str


def _render_shapes3d(c: _Context) -> _RuleCost:
    # CPU: colouring ~4,096-image blocks at ~16 bytes per pixel, the labels
    work = Work(seconds=c.n_images * c.res**2 * RENDER_US_PER_PIXEL * 1e-6)
    host = PROCESS_GIB["cpu"] * GIB + 4096 * c.res**2 * 16 + c.n_images * 6 * 8 * 2
    return _RuleCost([Job("render_shapes3d", "all", work, 0)], 0, 0.0, 0, host, None, "cpu")


def _dataset_deps(c: _Context) -> tuple[str, ...]:
    return ("render_shapes3d:all",) if c.cfg["dataset"]["source"] == "synthetic" else ()


def _labels_bytes(c: _Context) -> int:
    return c.n_images * 6 * 8 * 3  # labels (float64), level indices, the split table


def _train_score_model(c: _Context) -> _RuleCost:
    from . import SCORE_MODELS

    t = c.cfg["training"]
    g = c.training_gpus
    rows = math.ceil(t["batch_size"] / g)  # per GPU
    precision = ("bf16" if t["bf16"] else "tf32" if t["tf32"] else "fp32") if c.acc.gpu else "fp32"
    jobs, flops, dev, host = [], 0.0, 0.0, 0.0
    for model in SCORE_MODELS:
        cost = measure_network(c.score_kwargs(model == "cond"), "train")
        f = t["steps"] * t["batch_size"] * cost.flops
        # the step's tensors, Adam's two moments and the EMA copy, the training images held on the device (uint8)
        dev = max(dev, cost.peak(rows) + 3 * cost.param_bytes + c.n_train * c.pixels)
        # per process: the images read (the file's block and its reordered copy), sigma_max's 8,192 float images,
        # a checkpoint's copies of weights, EMA and Adam's moments; one process per GPU
        sub = 8192 * c.image * 2 if c.cfg["sde"]["sigma_max"] is None else 0
        host = max(host, g * (c.process + 2 * c.n_train * c.pixels + sub + 4 * cost.param_bytes) + _labels_bytes(c))
        work = Work().add("device", precision, f)
        work.read_bytes = c.n_train * c.pixels
        jobs.append(Job("train_score_model", model, work, g, _dataset_deps(c)))
        flops += f
    evals = len(SCORE_MODELS) * t["steps"] * t["batch_size"]
    return _RuleCost(jobs, evals, flops, dev, host, rows, precision)


def _train_classifier(c: _Context) -> _RuleCost:
    k = c.cfg["classifier"]
    train = measure_classifier(c.res, k["width"], "train")
    fwd = measure_classifier(c.res, k["width"], "forward")
    flops = k["steps"] * k["batch_size"] * train.flops + c.n_test * fwd.flops
    # the step, Adam's moments, the training images on the device; accuracy: 4,096 float test images per block
    dev = max(train.peak(k["batch_size"]) + 2 * train.param_bytes + c.n_train * c.pixels, fwd.peak(CLASSIFIER_ROWS))
    host = c.process + 2 * (c.n_train + c.n_test) * c.pixels + 4096 * c.image + _labels_bytes(c)
    work = Work().add("device", "fp32", flops)
    work.read_bytes = (c.n_train + c.n_test) * c.pixels
    job = Job("train_classifier", "all", work, 1, _dataset_deps(c))
    return _RuleCost([job], k["steps"] * k["batch_size"] + c.n_test, flops, dev, host, k["batch_size"], "fp32")


def _sample_images(c: _Context) -> _RuleCost:
    from . import SCORE_MODELS

    s = c.cfg["sampling"]
    n, n_real = s["n_samples"], min(s["n_samples"], c.n_test)
    evals = sampling_evaluations(n, s["steps"], s["method"], s["corrector"])
    clf = measure_classifier(c.res, c.cfg["classifier"]["width"], "forward")
    jobs, dev, flops, batch = [], 0.0, 0.0, None
    for model in SCORE_MODELS:
        cost = measure_network(c.score_kwargs(model == "cond"), "forward")
        row_extra = ROW_BUFFERS["sample_images"] * c.image
        batch = c.fit(s["batch_size"], cost, row_extra)
        dev = max(dev, cost.peak(batch) + batch * row_extra, clf.peak(min(n, CLASSIFIER_ROWS)) + 2 * n * c.image)
        f = evals * cost.flops + (2 * n + n_real) * clf.flops
        work = Work().add("device", "fp32", f)
        # nearest training image of every sample and held-out image: float64 GEMMs on the CPU, 4,096 images a block
        work.add("cpu", "fp64", 2 * (n + n_real) * c.n_train * c.pixels)
        work.read_bytes = (c.n_train + n_real) * c.pixels
        jobs.append(Job("sample_images", model, work, 1, (f"train_score_model:{model}", "train_classifier:all")))
        flops += f
    # samples, held-out images and their float copies; a block of training images: uint8 twice, float32, float64
    host = (
        c.process + n * (c.pixels + c.image) + n_real * (2 * c.pixels + c.image) + 4096 * (2 * c.pixels + 3 * c.image)
    )
    return _RuleCost(jobs, len(SCORE_MODELS) * evals, flops, dev, host + _labels_bytes(c), batch, "fp32")


def _extract_features(c: _Context) -> _RuleCost:
    ft = c.cfg["features"]
    n = min(ft["n_train"], c.n_train) + min(ft["n_test"], c.n_test)
    cost = measure_network(c.score_kwargs(False), "features", ft["layers"])
    row_extra = ROW_BUFFERS["extract_features"] * c.image
    batch = c.fit(ft["batch_size"], cost, row_extra)
    per_pool = 1 if ft["pooling"] == "mean" else ft["grid"] ** 2
    dims = sum(ch * per_pool for ch in cost.channels.values()) + 3 * min(8, c.res) ** 2  # + the pixels layer
    layers = len(ft["layers"]) + 1
    jobs, host = [], 0.0
    for s, idx in enumerate(c.shards):
        work = Work().add("device", "fp32", feature_evaluations(n, len(idx)) * cost.flops)
        work.read_bytes = n * c.pixels
        jobs.append(Job("extract_features", str(s), work, 1, ("train_score_model:uncond",)))
        # images (uint8 twice), x0, the noise and the noisy images (float32); the table: float32 features held in
        # lists of rows (~200 bytes of objects and keys each) and once more as Arrow columns
        table = n * len(idx) * (dims * 4 + layers * 200)
        host = max(host, c.process + n * (2 * c.pixels + 3 * c.image) + 2 * table + _labels_bytes(c))
    evals = feature_evaluations(n, len(c.taus))
    dev = cost.peak(batch) + batch * row_extra
    return _RuleCost(jobs, evals, evals * cost.flops, dev, host, batch, "fp32")


def _fit_linear_probes(c: _Context, features: _RuleCost) -> _RuleCost:
    ft, pr = c.cfg["features"], c.cfg["probes"]
    n_train, n_test = min(ft["n_train"], c.n_train), min(ft["n_test"], c.n_test)
    cost = measure_network(c.score_kwargs(False), "features", ft["layers"])
    per_pool = 1 if ft["pooling"] == "mean" else ft["grid"] ** 2
    dims = [ch * per_pool for ch in cost.channels.values()] + [3 * min(8, c.res) ** 2]
    classes = sum(n_lv for n_lv in c.levels if n_lv > 1)
    # L-BFGS on the multinomial loss: per iteration one loss-and-gradient pass, 2 GEMMs of n x d x L (upper bound:
    # max_iter iterations); the test predictions
    per_tau = sum(pr["max_iter"] * 4 * n_train * d * classes + 2 * n_test * d * classes for d in dims)
    jobs = []
    for s, idx in enumerate(c.shards):
        work = Work().add("cpu", "fp64", per_tau * len(idx))
        jobs.append(Job("fit_linear_probes", str(s), work, 0, tuple(j.id for j in features.jobs)))
    # per worker thread: one (layer, tau) decoded from a Parquet row group (pyarrow's default: up to 1,048,576
    # rows), its features as a float32 matrix and the scaler's float64 copies
    rows = (n_train + n_test) * len(c.taus) * len(dims)
    row_bytes = 4 * sum(dims) / len(dims) + 100
    slice_bytes = (n_train + n_test) * max(dims) * 4
    host = PROCESS_GIB["no_torch"] * GIB + c.threads * (2 * min(rows, 2**20) * row_bytes + 5 * slice_bytes)
    return _RuleCost(jobs, 0, per_tau * len(c.taus), 0, host, None, "fp64")


def _estimate_mutual_information(c: _Context) -> _RuleCost:
    mi = c.cfg["mutual_info"]
    n = min(mi["n_images"], c.n_test)
    n_factors = sum(1 for n_lv in c.levels if n_lv > 1)
    cost = measure_network(c.score_kwargs(True), "forward")
    row_extra = ROW_BUFFERS["estimate_mutual_information"] * c.image
    fixed_extra = n * c.image  # the images stay on the device
    rows = c.fit(mi["batch_size"], cost, row_extra, fixed_extra, min_rows=n_factors + 1)
    rows = (rows // (n_factors + 1)) * (n_factors + 1)  # whole images per call
    jobs = []
    # interval j of the integral ends at tau j + 1 (tau = 0 starts the grid) or at tau j
    first = 1 if c.taus[0] == 0 else 0
    for s, idx in enumerate(c.shards):
        intervals = int(np.sum(idx >= first))
        work = Work().add("device", "fp32", mi_evaluations(n, n_factors, c.taus, mi["n_times"], intervals) * cost.flops)
        work.read_bytes = n * c.pixels
        jobs.append(Job("estimate_mutual_information", str(s), work, 1, ("train_score_model:cond",)))
    evals = mi_evaluations(n, n_factors, c.taus, mi["n_times"])
    dev = cost.peak(rows) + rows * row_extra + fixed_extra
    # images (uint8 twice), x0 and one stratum's noise (float32)
    host = c.process + n * (2 * c.pixels + 2 * c.image) + _labels_bytes(c)
    return _RuleCost(jobs, evals, evals * cost.flops, dev, host, rows, "fp32")


def _run_forking(c: _Context) -> _RuleCost:
    fk = c.cfg["forking"]
    method = c.cfg["sampling"]["method"]
    base, forks = forking_evaluations(fk["n_base"], fk["n_forks"], fk["steps"], c.taus, method, fk["corrector"])
    cost = measure_network(c.score_kwargs(False), "forward")
    clf = measure_classifier(c.res, c.cfg["classifier"]["width"], "forward")
    row_extra = ROW_BUFFERS["run_forking"] * c.image
    rows = c.fit(fk["batch_size"], cost, row_extra)
    n_forks = fk["n_base"] * fk["n_forks"]
    jobs, evals = [], 0
    for s, idx in enumerate(c.shards):
        e = base + sum(forks[j] for j in idx)
        evals += e
        work = Work().add("device", "fp32", e * cost.flops + len(idx) * n_forks * clf.flops)
        jobs.append(Job("run_forking", str(s), work, 1, ("train_score_model:uncond", "train_classifier:all")))
    dev = max(cost.peak(rows) + rows * row_extra, rows * c.image + clf.peak(min(rows, CLASSIFIER_ROWS)))
    # the base paths' states at every tau (float32), one batch of finished forks, the strips' images
    n_strips = len(fk["strip_taus"])
    host = c.process + fk["n_base"] * max(len(i) for i in c.shards) * c.image + rows * c.image
    host += n_strips * fk["n_forks"] * (c.image + c.pixels)
    flops = sum(sum(j.work.device.values()) for j in jobs)
    return _RuleCost(jobs, evals, flops, dev, host, rows, "fp32")


def _compute_exact_filter(c: _Context) -> _RuleCost:
    ex = c.cfg["exact_filter"]
    q, d = ex["n_samples"], c.pixels
    n_t = len(c.taus) + 1  # sigma_max and the grid
    n_lev = sum(c.levels)
    work, evals, dev, host = Work(), 0, 0.0, 0.0
    for mixture in ex["mixtures"]:
        n = c.n_images if mixture == "all" else c.n_train
        chunk, qb = min(ex["chunk_size"], n), min(q, 1024)
        # one float64 GEMM [u_q; z_q] @ u_c^T per (query block, chunk); per tau the logits (~6 passes) and the
        # level sums (a GEMM with the one-hot level matrix)
        work.add("device", "fp64", 2 * (2 * q) * d * n + n_t * q * n * (6 + 2 * n_lev))
        work.read_bytes += (n + q) * c.pixels
        evals += q * n
        # queries and noise, a chunk and its one-hot levels, the Gram block, distances and logits, the running sums
        tensors = 8 * (2 * q * d + chunk * (d + n_lev) + 2 * qb * chunk + 2 * qb * chunk + 2 * q * n_t * n_lev)
        dev = max(dev, tensors)
        host = max(host, c.process + q * (c.pixels + 8 * d) + 2 * chunk * c.pixels + _labels_bytes(c))
    job = Job("compute_exact_filter", "all", work, 1, ("train_score_model:uncond",))
    return _RuleCost([job], evals, sum(work.device.values()), dev, host, None, "fp64")


def _schedule(jobs: list[Job], durations: Callable[[Job, int], float], n_gpus: int) -> float:
    """Makespan (hours) of list scheduling on ``n_gpus`` GPUs, one job per GPU (training: its GPU count, at most
    n_gpus); CPU jobs run as soon as they are ready. Priority: the longest path from the job to the end."""
    by_id = {j.id: j for j in jobs}
    need = {j.id: min(j.gpus, n_gpus) for j in jobs}
    dur = {j.id: durations(j, need[j.id]) for j in jobs}
    children: dict[str, list[str]] = {j.id: [] for j in jobs}
    for j in jobs:
        for d in j.deps:
            if d in children:
                children[d].append(j.id)

    @functools.lru_cache(maxsize=None)
    def rank(jid: str) -> float:
        return dur[jid] + max((rank(k) for k in children[jid]), default=0.0)

    waiting = {j.id: {d for d in j.deps if d in by_id} for j in jobs}
    ready = sorted((jid for jid, deps in waiting.items() if not deps), key=lambda k: -rank(k))
    running: list[tuple[float, str]] = []
    now, free, done = 0.0, n_gpus, 0
    while done < len(jobs):
        for jid in list(ready):  # highest rank first; a job that does not fit lets smaller ones start
            if need[jid] <= free:
                free -= need[jid]
                ready.remove(jid)
                heapq.heappush(running, (now + dur[jid], jid))
        now, jid = heapq.heappop(running)
        free += need[jid]
        done += 1
        for k in children[jid]:
            waiting[k].discard(jid)
            if not waiting[k]:
                ready.append(k)
        ready.sort(key=lambda k: -rank(k))
    return now


def plan(
    config: dict,
    *,
    accelerator: str | None = None,
    device_memory_gb: float | None = None,
    gpus: int = 1,
    tau_shards: int | None = None,
    training_gpus: int | None = None,
    threads: int = 1,
    mfu: float = MFU,
) -> Plan:
    """The cost plan of a checked config (:func:`config.load_config`).

    Args:
        accelerator: a key of :data:`ACCELERATORS` (default: the config's ``accelerator``).
        device_memory_gb: the device's memory (default: the config's ``device_memory_gb``; "auto": the
            accelerator's).
        gpus: GPUs available for the critical path (one job per GPU; training: ``training.gpus`` of them).
        tau_shards, training_gpus: override the config's ``tau_shards`` and ``training.gpus``.
        threads: CPU threads per job (the rules' ``threads``).
    """
    name = accelerator or config.get("accelerator", "h100")
    if name not in ACCELERATORS:
        raise ValueError(f"accelerator = {name!r}: allowed: {', '.join(ACCELERATORS)}")
    acc = ACCELERATORS[name]
    gb = device_memory_gb if device_memory_gb is not None else config.get("device_memory_gb", "auto")
    gb = acc.memory_gb if gb == "auto" else float(gb)
    shards = tau_shards if tau_shards is not None else config.get("tau_shards", 1)
    tgpus = training_gpus if training_gpus is not None else config["training"].get("gpus", 1)
    c = _Context(config, acc, gb, max(1, int(gpus)), shards, tgpus if acc.gpu else 1, threads, mfu)
    costs: dict[str, _RuleCost] = {}
    if config["dataset"]["source"] == "synthetic":
        costs["render_shapes3d"] = _render_shapes3d(c)
    costs["train_score_model"] = _train_score_model(c)
    costs["train_classifier"] = _train_classifier(c)
    costs["sample_images"] = _sample_images(c)
    costs["extract_features"] = _extract_features(c)
    costs["fit_linear_probes"] = _fit_linear_probes(c, costs["extract_features"])
    costs["estimate_mutual_information"] = _estimate_mutual_information(c)
    costs["run_forking"] = _run_forking(c)
    costs["compute_exact_filter"] = _compute_exact_filter(c)

    def job_gpus(job: Job) -> int:
        return job.gpus if acc.gpu else 0

    def duration(job: Job, gpus_used: int) -> float:
        return c.hours(job.work, gpus_used)

    rules = []
    for rule, rc in costs.items():
        hours = [c.hours(j.work, job_gpus(j)) for j in rc.jobs]
        gpu_hours = sum(h * job_gpus(j) for h, j in zip(hours, rc.jobs))
        host = rc.host_bytes + (0 if acc.gpu else rc.device_bytes)
        device = c.device_peak(rc.device_bytes) if acc.gpu and rc.device_bytes else 0.0
        runtime = max(RUNTIME_FLOOR_MIN, 10 * math.ceil((RUNTIME_SAFETY * max(hours) * 60 + RUNTIME_STARTUP_MIN) / 10))
        mem_mb = max(MEM_MB_FLOOR, 1000 * math.ceil(HOST_SAFETY * host / 2**20 / 1000))
        rules.append(
            RulePlan(
                rule=rule,
                jobs=len(rc.jobs),
                evaluations=int(rc.evaluations),
                tflop=rc.flops / 1e12,
                gpu_hours=gpu_hours,
                peak_device_gib=device / GIB,
                peak_host_gib=host / GIB,
                runtime_min=int(runtime),
                mem_mb=int(mem_mb),
                gpus=max(job_gpus(j) for j in rc.jobs),
                batch=rc.batch,
                precision=rc.precision if acc.gpu or rc.precision == "cpu" else "fp32",
                hours_per_job=max(hours),
            )
        )
    jobs = [j for rc in costs.values() for j in rc.jobs]
    if acc.gpu:
        jobs_gpu = jobs
    else:  # every job on the CPU: "GPUs" are the job slots
        jobs_gpu = [Job(j.rule, j.name, j.work, 1, j.deps) for j in jobs]
    critical = _schedule(jobs_gpu, duration, c.gpus)
    total = sum(r.gpu_hours for r in rules) if acc.gpu else sum(r.hours_per_job * r.jobs for r in rules)
    assumptions = {
        "accelerator": acc.name,
        "accelerator_label": acc.label,
        "device_memory_gb": gb,
        "batch_budget_gib": round(c.budget / GIB, 2),
        "peak_tflops": dict(acc.tflops),
        "mfu": mfu,
        "ddp_efficiency": DDP_EFFICIENCY,
        "cpu_thread_tflops": dict(CPU_CORE_TFLOPS),
        "read_mb_s": READ_MB_S,
        "gpus": c.gpus,
        "training_gpus": c.training_gpus,
        "tau_shards": len(c.shards),
        "threads": threads,
    }
    return Plan(rules, total, critical, assumptions)


def rule_resources(config: dict, threads: int = 1) -> dict[str, dict[str, int]]:
    """{rule: {"runtime": minutes, "mem_mb": MB}} of every planned rule, for the workflow's ``resources:``."""
    return {r.rule: {"runtime": r.runtime_min, "mem_mb": r.mem_mb} for r in plan(config, threads=threads).rules}


# --- command line ------------------------------------------------------------------------------------------------


def format_plan(p: Plan) -> str:
    """The plan as a text table, with its assumptions."""
    head = ["rule", "jobs", "GPUs", "batch", "evaluations", "TFLOP", "prec", "GPU-h", "h/job", "device GiB",
            "host GiB", "runtime", "mem_mb"]  # fmt: skip
    rows = [
        [
            r.rule,
            str(r.jobs),
            str(r.gpus),
            "-" if r.batch is None else str(r.batch),
            f"{r.evaluations:,}",
            f"{r.tflop:,.1f}",
            r.precision,
            f"{r.gpu_hours:.2f}",
            f"{r.hours_per_job:.2f}",
            f"{r.peak_device_gib:.1f}",
            f"{r.peak_host_gib:.1f}",
            str(r.runtime_min),
            str(r.mem_mb),
        ]
        for r in p.rules
    ]
    widths = [max(len(x) for x in col) for col in zip(head, *rows)]
    lines = [
        "  ".join(x.ljust(w) if i == 0 else x.rjust(w) for i, (x, w) in enumerate(zip(row, widths)))
        for row in [head, *rows]
    ]
    a = p.assumptions
    peaks = ", ".join(f"{k} {v:g}" for k, v in a["peak_tflops"].items())
    cpu = ", ".join(f"{k} {v:g}" for k, v in a["cpu_thread_tflops"].items())
    lines += [
        "",
        f"total GPU-hours {p.total_gpu_hours:.2f}; critical path with {a['gpus']} GPU(s): "
        f"{p.critical_path_hours:.2f} h (training.gpus {a['training_gpus']}, tau_shards {a['tau_shards']}; "
        "one job per GPU)",
        "",
        "assumptions:",
        f"  device: {a['accelerator']} ({a['accelerator_label']}), {a['device_memory_gb']:g} GB; a batch's tensors "
        f"fill at most {a['batch_budget_gib']:g} GiB ({DEVICE_HEADROOM:.0%} of it less a {DEVICE_RESERVE_GIB:g} "
        "GiB reserve for the CUDA context and kernel workspaces, which the device column includes)",
        f"  throughput: dense peak TFLOP/s {peaks} x MFU {a['mfu']:g}; training on G GPUs at {DDP_EFFICIENCY:g} x G; "
        f"a CPU thread {cpu} TFLOP/s x the same MFU ({a['threads']} per job); dataset reads {a['read_mb_s']:g} MB/s",
        "  precision: training as training.bf16 / tf32 say; sampling, features, MI, forking and the classifier fp32 "
        "(TF32 off for measurements); exact filter and nearest-image distances fp64",
        f"  memory: device = measured tensors (fp32 for training: bf16 autocast needs less); host = the arrays each "
        f"stage holds + {PROCESS_GIB['gpu']:g} GiB per process with CUDA ({PROCESS_GIB['cpu']:g} without)",
        f"  requests: runtime = {RUNTIME_SAFETY:g} x predicted + {RUNTIME_STARTUP_MIN} min, rounded up to 10, "
        f">= {RUNTIME_FLOOR_MIN}; mem_mb = {HOST_SAFETY:g} x predicted host peak, rounded up to 1000, "
        f">= {MEM_MB_FLOOR}",
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m latent_abstractions.plan",
        description="Cost plan of a workflow config: per rule evaluations, FLOPs, memory, GPU-hours, Slurm requests.",
    )
    parser.add_argument("--configfile", nargs="+", default=[], help="config files over config/config.yaml, in order")
    parser.add_argument("--gpus", type=int, default=1, help="GPUs for the critical path (default 1)")
    parser.add_argument("--device-memory-gb", type=float, default=None, help="device memory (default: the config's)")
    parser.add_argument("--accelerator", choices=sorted(ACCELERATORS), default=None, help="default: the config's")
    parser.add_argument("--tau-shards", type=int, default=None, help="override the config's tau_shards")
    parser.add_argument("--training-gpus", type=int, default=None, help="override the config's training.gpus")
    parser.add_argument("--mfu", type=float, default=MFU, help=f"model-FLOPs utilisation (default {MFU})")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    from .config import ConfigError, load_config

    try:
        config = load_config(args.configfile)
        p = plan(
            config,
            accelerator=args.accelerator,
            device_memory_gb=args.device_memory_gb,
            gpus=args.gpus,
            tau_shards=args.tau_shards,
            training_gpus=args.training_gpus,
            mfu=args.mfu,
        )
    except (ConfigError, ValueError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(json.dumps(p.as_dict(), indent=1) if args.json else format_plan(p))
    return 0


if __name__ == "__main__":
    sys.exit(main())
