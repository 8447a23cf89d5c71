"""Every rule's log holds its error: scripts run inside runtime.rule_logging (warnings and exceptions too)."""

import logging
import re
import warnings

import h5py
import numpy as np
import pytest
from conftest import run_snakemake

from latent_abstractions.runtime import rule_logging


def test_rule_logging_writes_the_exception_and_warnings_to_the_log(tmp_path):
    log_path = tmp_path / "logs" / "rule" / "job.log"
    with pytest.raises(KeyError, match="missing_key"):
        with rule_logging(str(log_path), "some_rule") as log:
            log.info("started")
            warnings.warn("a deprecated setting", UserWarning, stacklevel=1)
            {}["missing_key"]
    text = log_path.read_text()
    assert "started" in text and "a deprecated setting" in text
    assert "some_rule failed: KeyError: 'missing_key'" in text and "Traceback (most recent call last)" in text
    logging.captureWarnings(False)


def test_a_failing_rule_leaves_its_traceback_in_its_log(workflow_copy):
    # passes the config's pre-flight check (an 'images' dataset of the tiny size) but lacks 'labels'
    bad = workflow_copy / "broken.h5"
    with h5py.File(bad, "w") as f:
        f["images"] = np.zeros((256, 16, 16, 3), np.uint8)
    (workflow_copy / "path.yaml").write_text(f"dataset: {{source: path, path: {bad}}}\n")
    proc = run_snakemake(
        workflow_copy,
        "results/tiny/data/split.parquet",
        "--cores",
        "1",
        "--configfile",
        "config/tiny.yaml",
        "path.yaml",
        check=False,
        timeout=300,
    )
    assert proc.returncode != 0
    log = (workflow_copy / "results" / "tiny" / "logs" / "split_dataset" / "split_dataset.log").read_text()
    assert re.search(r"ERROR .*split_dataset failed: DatasetError: .*broken\.h5: missing dataset 'labels'", log), log
    assert "Traceback (most recent call last)" in log


@pytest.fixture
def cuda_flags(monkeypatch):
    """select_device on a pretend GPU host (CUDA reported available); torch's numerics flags restored afterwards."""
    import torch

    saved = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32, torch.backends.cudnn.benchmark)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a: "pretend GPU")
    yield torch.backends
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32, torch.backends.cudnn.benchmark = saved


def flags(backends):
    return backends.cuda.matmul.allow_tf32, backends.cudnn.allow_tf32, backends.cudnn.benchmark


def test_a_gpu_job_measures_without_tf32_and_autotunes_inference_only(cuda_flags):
    from latent_abstractions.runtime import select_device

    cuda_flags.cuda.matmul.allow_tf32 = cuda_flags.cudnn.allow_tf32 = True  # cuDNN's default allows TF32
    assert select_device(1).type == "cuda"
    assert flags(cuda_flags) == (False, False, True)
    select_device(1, training=True)
    assert flags(cuda_flags) == (False, False, False)
    select_device(1, training=True, tf32=True)  # only where the config asks
    assert flags(cuda_flags) == (True, True, False)
    cuda_flags.cuda.matmul.allow_tf32 = cuda_flags.cudnn.allow_tf32 = True
    assert select_device(0).type == "cpu"  # a CPU job leaves the CUDA flags alone
    assert flags(cuda_flags)[:2] == (True, True)


def test_every_gpu_script_selects_its_device_and_only_training_scripts_skip_autotuning(gpu_rules):
    from conftest import ROOT

    for rule in gpu_rules:
        text = (ROOT / "workflow" / "scripts" / f"{rule}.py").read_text()
        assert "select_device(" in text, rule
        assert ("training=True" in text) == rule.startswith("train_"), rule
