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
