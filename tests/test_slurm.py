"""The tiny workflow through `snakemake --profile profiles/slurm` on a real single-node Slurm cluster.

Checks that every non-local rule ran as a Slurm job (the per-tau measurements in two tau shards each), that the
outputs equal a local (unsharded) run's with the same seed, that a job failing under Slurm is reported as failed and
a rerun then completes, and that a training cut into segments (two gloo processes under torchrun in one Slurm job)
is resubmitted until done. Skips with the reason
where the cluster cannot be started (not root, or Slurm not installed: `bash scripts/slurm_local.sh install`).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
from conftest import ROOT, copy_workflow, snakemake_exe

pytestmark = pytest.mark.slurm

# The test's overrides of the profile: the local partition, fast status polling through squeue (no accounting
# database), one thread per job as in the local reference run; run_profile adds no GPUs for the GPU rules.
OVERRIDES = [
    "--default-resources",
    "slurm_partition=debug",
    "mem_mb=2000",
    "runtime=30",
    "--slurm-status-command",
    "squeue",
    "--slurm-init-seconds-before-status-checks",
    "1",
    "--max-threads",
    "1",
    "--retries",
    "0",
    "--jobs",
    "4",
]


def slurm(*args: str) -> str:
    return subprocess.run(args, capture_output=True, text=True, check=True, timeout=30).stdout


@pytest.fixture(scope="module")
def cluster():
    if os.geteuid() != 0:
        pytest.skip("the local Slurm cluster needs root")
    if shutil.which("slurmctld") is None:
        pytest.skip("Slurm is not installed (bash scripts/slurm_local.sh install)")
    script = ROOT / "scripts" / "slurm_local.sh"
    proc = subprocess.run(["bash", str(script), "start"], capture_output=True, text=True, timeout=60)
    if proc.returncode != 0:
        pytest.skip(f"the local Slurm cluster did not start: {proc.stderr[-500:]}")
    yield
    subprocess.run(["bash", str(script), "stop"], capture_output=True, timeout=60)


def run_profile(
    wf: Path, gpu_rules: set[str], *extra: str, timeout: float = 900, configs: tuple[str, ...] = ()
) -> subprocess.CompletedProcess:
    """snakemake --profile profiles/slurm in ``wf`` (with ``OVERRIDES``, no GPU for ``gpu_rules``; config: tiny.yaml,
    then ``configs``) under a hard timeout that kills the whole process group."""
    no_gpus = ["--set-resources", *[f"{rule}:gpu=0" for rule in sorted(gpu_rules)]]
    cmd = [
        snakemake_exe(),
        *extra,  # first: the options below take several values each, and would read a target as one more
        "--profile",
        "profiles/slurm",
        *OVERRIDES,
        *no_gpus,
        "--configfile",
        "config/tiny.yaml",
        *configs,
    ]
    t0 = time.monotonic()
    proc = subprocess.Popen(
        cmd,
        cwd=wf,
        env={**os.environ, "LATENT_ABSTRACTIONS_GPUS": "0"},
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired as err:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        raise AssertionError(f"snakemake under Slurm did not finish in {timeout} s:\n{out[-4000:]}") from err
    print(
        f"\nsnakemake --profile profiles/slurm {' '.join(extra)}: exit {proc.returncode} after "
        f"{time.monotonic() - t0:.0f} s"
    )
    return subprocess.CompletedProcess(cmd, proc.returncode, out, "")


def job_table(after: int) -> pd.DataFrame:
    """Slurm jobs with id > ``after``: rule (from the plugin's job comment), job id, state, elapsed."""
    rows = []
    for line in slurm("squeue", "--states=all", "--noheader", "--format=%i|%k|%T|%M").splitlines():
        job_id, comment, state, elapsed = line.split("|")
        if int(job_id) > after and comment.startswith("rule_"):
            rule = comment[len("rule_") :].split("_wildcards_")[0]
            rows.append(
                {
                    "rule": rule,
                    "job_id": int(job_id),
                    "state": state,
                    "elapsed": elapsed,
                    "wildcards": comment.split("_wildcards_")[1] if "_wildcards_" in comment else "",
                }
            )
    return pd.DataFrame(rows, columns=["rule", "job_id", "state", "elapsed", "wildcards"]).sort_values("job_id")


def last_job_id() -> int:
    ids = [int(x) for x in slurm("squeue", "--states=all", "--noheader", "--format=%i").split()]
    return max(ids, default=0)


def test_tiny_workflow_on_slurm_matches_local_and_reports_failures(
    cluster, tiny_run, tmp_path, gpu_rules, cluster_rules
):
    # the same files as the local reference run (not a fresh copy of a working tree that may have moved on)
    wf = tmp_path / "wf"
    shutil.copytree(
        tiny_run, wf, ignore=lambda d, names: {"results", ".snakemake"} & set(names) if Path(d) == tiny_run else set()
    )
    # the per-tau measurements in two tau shards each: the gathered tables must still equal the local run's
    (wf / "shards.yaml").write_text("tau_shards: 2\n")
    before = last_job_id()
    proc = run_profile(wf, gpu_rules, configs=("shards.yaml",))
    assert proc.returncode == 0, proc.stdout[-6000:]
    jobs = job_table(before)
    print("\nSlurm job table (first run):\n" + jobs.to_string(index=False))
    assert set(jobs["rule"]) == cluster_rules, jobs
    assert (jobs["state"] == "COMPLETED").all(), jobs
    # two score models and two sample jobs; features and probes in two shards, MI and forking in two shards on
    # each of the two scores (the gathers are local: no Slurm jobs)
    per_rule = {
        "train_score_model": 2,
        "sample_images": 2,
        "extract_features": 2,
        "fit_linear_probes": 2,
        "estimate_mutual_information": 4,
        "run_forking": 4,
    }
    assert jobs["rule"].value_counts().to_dict() == {rule: per_rule.get(rule, 1) for rule in cluster_rules}, jobs
    # the plugin's own per-job logs name the same job ids
    logged = {int(p.stem) for p in (wf / ".snakemake" / "slurm_logs").rglob("*.log")}
    assert set(jobs["job_id"]) <= logged

    res, ref = wf / "results" / "tiny", tiny_run / "results" / "tiny"
    for table in (
        "probes",
        "mutual_info",
        "forking",
        "classifier_accuracy",
        "sample_scores_uncond",
        "sample_scores_cond",
        "emergence",
    ):
        pd.testing.assert_frame_equal(
            pd.read_parquet(res / "tables" / f"{table}.parquet"),
            pd.read_parquet(ref / "tables" / f"{table}.parquet"),
            obj=table,
        )
    for h5 in ("samples/uncond.h5", "forking/strips.h5", "data/shapes3d.h5"):
        with h5py.File(res / h5) as a, h5py.File(ref / h5) as b:
            np.testing.assert_array_equal(a["images"][...], b["images"][...], err_msg=h5)
    assert (res / "report" / "report.html").exists()

    # A job that fails under Slurm: corrupt the probes' input; the probes' shards must fail and be reported.
    # (Only the probes table is asked for, so the local plotting rules downstream do not rerun.)
    features = res / "features" / "features.parquet"
    good = features.read_bytes()
    features.write_bytes(b"not parquet")
    target = "results/tiny/tables/probes.parquet"
    before = last_job_id()
    proc = run_profile(wf, gpu_rules, target, configs=("shards.yaml",))
    assert proc.returncode != 0, proc.stdout[-4000:]
    failed = job_table(before)
    print("Slurm job table (failing run):\n" + failed.to_string(index=False))
    assert set(failed["rule"]) == {"fit_linear_probes"} and set(failed["state"]) == {"FAILED"}, failed
    assert "fit_linear_probes" in proc.stdout and "Error" in proc.stdout

    # Repair the input and rerun: both shards complete.
    features.write_bytes(good)
    before = last_job_id()
    proc = run_profile(wf, gpu_rules, target, configs=("shards.yaml",))
    assert proc.returncode == 0, proc.stdout[-6000:]
    rerun = job_table(before)
    assert list(rerun["rule"]) == ["fit_linear_probes"] * 2 and set(rerun["state"]) == {"COMPLETED"}, rerun
    pd.testing.assert_frame_equal(
        pd.read_parquet(res / "tables" / "probes.parquet"), pd.read_parquet(ref / "tables" / "probes.parquet")
    )


# 106 s of the suite's 15 min; tests/test_segments.py runs the same segments and Snakemake restarts locally in 31 s.
# Run it with: .venv/bin/pytest -m slow tests/test_slurm.py
@pytest.mark.slow
def test_a_training_in_segments_is_resubmitted_until_done(cluster, tmp_path, gpu_rules):
    # two processes (gloo, CPU) in one Slurm job, whose wall-clock budget is spent at its first log row (step 10
    # of 20): the job saves, exits 75 (FAILED for Slurm), and the rule's own retries (max_segments - 1, which win
    # over the --retries 0 above) resubmit it; the second job resumes and finishes
    wf = copy_workflow(tmp_path / "wf")
    (wf / "segmented.yaml").write_text(
        "training: {gpus: 2, segment_minutes: 0.00001, max_segments: 3, log_every: 10}\n"
    )
    target = "results/tiny/models/uncond/model.pt"
    before = last_job_id()
    proc = run_profile(wf, gpu_rules, target, configs=("segmented.yaml",))
    assert proc.returncode == 0, proc.stdout[-6000:]
    jobs = job_table(before)
    print("\nSlurm job table (segmented training):\n" + jobs.to_string(index=False))
    train = jobs[jobs["rule"] == "train_score_model"]
    assert list(train["state"]) == ["FAILED", "COMPLETED"], jobs
    assert "Trying to restart job" in proc.stdout
    log = (wf / "results/tiny/logs/train_score_model/uncond.log").read_text()
    assert "launching 2 processes" in log and "resumed from step 10 of 20" in log, log[-3000:]
    assert (wf / target).exists()
