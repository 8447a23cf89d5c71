"""Process-level set-up shared by the workflow scripts: logging to the rule's log, threads, device and numerics,
and the data-parallel processes of a multi-GPU job (launched by torchrun, joined into one process group).

Only the standard library is imported at module level, so a script can route its log before it imports
anything that might fail (a package missing from the rule's environment is then in the log too).
"""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess
import sys
from dataclasses import dataclass
from typing import Iterator, Sequence

LOGGER = "latent_abstractions"
#: Exit status of a job that stopped on purpose to be run again (a training segment that used its wall-clock
#: budget and saved its state): sysexits' EX_TEMPFAIL, "try again later". Snakemake's retries rerun it.
EXIT_RESUME = 75
#: The ``training`` config keys that say how a training job runs, not what it computes: the workflow keeps them out
#: of the rule's params, so changing them reruns no finished model.
TRAINING_EXECUTION_KEYS = ("gpus", "segment_minutes", "max_segments")


def setup_logging(log_path: str | None = None) -> logging.Logger:
    """Log INFO and above (and Python warnings) to ``log_path`` (appending) and to stderr; return the package logger."""
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_path:
        os.makedirs(os.path.dirname(log_path) or ".", exist_ok=True)
        handlers.append(logging.FileHandler(log_path, mode="a"))
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        handlers=handlers,
        force=True,
    )
    logging.captureWarnings(True)  # warnings.warn(...) -> logger "py.warnings" -> the same handlers
    return logging.getLogger(LOGGER)


@contextlib.contextmanager
def rule_logging(log_path: str, rule: str | None = None) -> Iterator[logging.Logger]:
    """Route logging and warnings to ``log_path``; log any exception with its traceback there, then re-raise.

    Every workflow script runs its body inside this block, so a failed job's log names the error (Snakemake
    points the user to the log, and ``show-failed-logs`` prints it).
    """
    log = setup_logging(log_path)
    try:
        yield log
    except BaseException as err:
        if isinstance(err, SystemExit) and err.code == EXIT_RESUME:
            log.info(
                "%s stopped to be rerun (exit status %d): it resumes from its saved state", rule or "rule", EXIT_RESUME
            )
        elif not (isinstance(err, SystemExit) and err.code in (0, None)):
            log.exception("%s failed: %s: %s", rule or "rule", type(err).__name__, err)
        raise
    finally:
        for handler in logging.getLogger().handlers:
            handler.flush()


def set_numerics(*, tf32: bool = False, cudnn_benchmark: bool = False) -> None:
    """The CUDA numerics of this process, set in this one place (no effect on CPU computations).

    Args:
        tf32: allow TF32 (10-bit mantissa) in matmuls and cuDNN convolutions. PyTorch's default allows it in
            convolutions, which moves the MI integrand by ~1e-3 per unit time; every measurement runs with it off.
        cudnn_benchmark: let cuDNN time its convolution algorithms per input shape and keep the fastest. With TF32
            off every candidate computes an fp32 convolution, so the choice changes results only by fp32 rounding
            (summation order); on for inference, off for training, where run-to-run choices would compound.
    """
    import torch

    torch.backends.cuda.matmul.allow_tf32 = tf32
    torch.backends.cudnn.allow_tf32 = tf32
    torch.backends.cudnn.benchmark = cudnn_benchmark


def select_device(n_gpus: int, threads: int | None = None, *, training: bool = False, tf32: bool = False):
    """The torch device a job must use: CUDA exactly when it was given a GPU (``n_gpus > 0``).

    On CUDA it also sets the numerics (:func:`set_numerics`): TF32 as ``tf32`` (off unless asked), cuDNN autotuning
    for inference jobs (``training`` False). The trainer sets TF32 from its own settings.

    Raises:
        RuntimeError: if a GPU was requested but CUDA is not available (a CPU-only torch on a GPU node).
    """
    import torch

    log = logging.getLogger(LOGGER)
    if threads:
        torch.set_num_threads(int(threads))
    if n_gpus and n_gpus > 0:
        if not torch.cuda.is_available():
            raise RuntimeError(
                "this job was given gpu=%d but torch.cuda.is_available() is False "
                "(torch %s; CUDA_VISIBLE_DEVICES=%r). Install a CUDA build of torch, or run with gpu=0."
                % (n_gpus, torch.__version__, os.environ.get("CUDA_VISIBLE_DEVICES"))
            )
        dev = torch.device("cuda")
        set_numerics(tf32=tf32, cudnn_benchmark=not training)
        log.info(
            "device: cuda (%s), CUDA_VISIBLE_DEVICES=%r; TF32 %s, cudnn.benchmark %s",
            torch.cuda.get_device_name(0),
            os.environ.get("CUDA_VISIBLE_DEVICES"),
            "on" if tf32 else "off",
            "off" if training else "on",
        )
    else:
        dev = torch.device("cpu")
        log.info("device: cpu (%d threads)", torch.get_num_threads())
    return dev


@dataclass(frozen=True)
class Ranks:
    """This process's place in a data-parallel job: global rank, number of processes, rank on this node."""

    rank: int
    world_size: int
    local_rank: int

    @property
    def is_main(self) -> bool:
        """Rank 0: the one process that holds the state lock and writes checkpoints, logs and outputs."""
        return self.rank == 0


def join_process_group(device_type: str) -> Ranks:
    """Join the process group that ``torchrun`` describes in the environment (RANK, WORLD_SIZE, LOCAL_RANK,
    MASTER_ADDR, MASTER_PORT): NCCL on CUDA, each process on GPU ``LOCAL_RANK``; gloo on the CPU.

    Raises:
        RuntimeError: if the environment does not describe a torchrun worker.
    """
    import torch
    import torch.distributed as dist

    try:
        ranks = Ranks(int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), int(os.environ["LOCAL_RANK"]))
    except KeyError as err:
        raise RuntimeError(f"not started by torchrun: the environment lacks {err.args[0]}") from None
    if device_type == "cuda":
        torch.cuda.set_device(ranks.local_rank)
        dist.init_process_group("nccl", device_id=torch.device("cuda", ranks.local_rank))
    else:
        dist.init_process_group("gloo")
    return ranks


def run_torchrun(
    module: str, args: Sequence[str], nproc: int, threads: int, output: str | None = None
) -> subprocess.CompletedProcess:
    """Run ``python -m module *args`` as ``nproc`` processes on this node under ``torchrun``.

    torchrun (``torch.distributed.run``) starts the processes, gives each its RANK, LOCAL_RANK and WORLD_SIZE and a
    free rendezvous port on this host (``--standalone``), and fails the whole group as soon as one process fails.
    Each process runs ``threads`` intra-op threads (OMP_NUM_THREADS). Their stdout and stderr are appended to
    ``output`` (the rule's log), else inherited.
    """
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc-per-node={nproc}",
        "-m",
        module,
        *args,
    ]
    env = {**os.environ, "OMP_NUM_THREADS": str(max(1, threads))}
    logging.getLogger(LOGGER).info("launching %d processes: %s", nproc, " ".join(cmd))
    if output is None:
        return subprocess.run(cmd, env=env, check=False)
    with open(output, "a") as out:
        return subprocess.run(cmd, env=env, check=False, stdout=out, stderr=subprocess.STDOUT)
