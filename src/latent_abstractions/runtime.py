"""Process-level set-up shared by the workflow scripts: logging to the rule's log, threads, device and numerics.

Only the standard library is imported at module level, so a script can route its log before it imports
anything that might fail (a package missing from the rule's environment is then in the log too).
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from typing import Iterator

LOGGER = "latent_abstractions"


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
        if not (isinstance(err, SystemExit) and err.code in (0, None)):
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
