"""Process-level set-up shared by the workflow scripts: logging, threads, device selection."""

from __future__ import annotations

import logging
import os
import sys

import torch


def setup_logging(log_path: str | None = None) -> logging.Logger:
    """Log INFO and above to ``log_path`` (appending) and to stderr; return the package logger."""
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
    return logging.getLogger("latent_abstractions")


def select_device(n_gpus: int, threads: int | None = None) -> torch.device:
    """The device a job must use: CUDA exactly when it was given a GPU (``n_gpus > 0``).

    Raises:
        RuntimeError: if a GPU was requested but CUDA is not available (a CPU-only torch on a GPU node).
    """
    log = logging.getLogger("latent_abstractions")
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
        log.info("device: cuda (%s), CUDA_VISIBLE_DEVICES=%r", torch.cuda.get_device_name(0),
                 os.environ.get("CUDA_VISIBLE_DEVICES"))
    else:
        dev = torch.device("cpu")
        log.info("device: cpu (%d threads)", torch.get_num_threads())
    return dev
