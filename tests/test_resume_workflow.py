"""Kill a training job mid-way through Snakemake, run Snakemake again: it resumes, and ends as if never killed."""

import os
import re
import signal
import subprocess
import time

import psutil  # a dependency of snakemake itself
import torch
from conftest import copy_workflow, local_env, run_snakemake, snakemake_exe

TARGET = "results/tiny/models/uncond/model.pt"
ARGS = [TARGET, "--cores", "1", "--configfile", "config/tiny.yaml", "longer.yaml"]
LONGER = "training: {steps: 60, checkpoint_every: 10, log_every: 5, batch_size: 8}\n"


def test_killed_training_resumes_and_matches_an_uninterrupted_run(tmp_path):
    killed = copy_workflow(tmp_path / "killed")
    clean = copy_workflow(tmp_path / "clean")
    for wf in (killed, clean):
        (wf / "longer.yaml").write_text(LONGER)
    env = local_env()
    proc = subprocess.Popen(
        [snakemake_exe(), *ARGS],
        cwd=killed,
        env=env,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    ckpt = killed / "results/tiny/state/uncond/checkpoint.pt"
    deadline = time.time() + 240
    try:
        while not ckpt.exists():  # wait for the first checkpoint, then SIGKILL the training job itself
            assert proc.poll() is None, "snakemake ended before training checkpointed"
            assert time.time() < deadline, "no checkpoint appeared"
            time.sleep(0.2)
        jobs = [
            p for p in psutil.Process(proc.pid).children(recursive=True) if "train_score_model" in " ".join(p.cmdline())
        ]
        assert jobs, "found no training job process"
        for job in jobs:
            job.send_signal(signal.SIGKILL)
        assert proc.wait(timeout=60) != 0  # Snakemake reports the killed job as failed
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert not (killed / TARGET).exists(), "training finished before it could be killed"
    step_at_kill = torch.load(ckpt, weights_only=True)["step"]
    assert 0 < step_at_kill < 60

    run_snakemake(killed, *ARGS, timeout=300)
    log = (killed / "results/tiny/logs/train_score_model/uncond.log").read_text()
    resumed = re.findall(r"resumed from step (\d+) of 60", log)
    assert resumed == [str(step_at_kill)], log[-2000:]  # once, from the checkpoint the killed job left
    run_snakemake(clean, *ARGS, timeout=300)
    a = torch.load(killed / TARGET, weights_only=True)
    b = torch.load(clean / TARGET, weights_only=True)
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), f"{k} differs between the resumed and the uninterrupted run"
