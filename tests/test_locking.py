"""One trainer per state directory, tested with real processes."""

import errno
import logging
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from latent_abstractions import locking
from latent_abstractions.data.render import GridSpec
from latent_abstractions.data.shapes3d import make_split, write_synthetic
from latent_abstractions.locking import StateLockedError, check_state_free, state_lock

SRC = str(Path(__file__).resolve().parents[1] / "src")


def hold_lock(state_dir: Path) -> subprocess.Popen:
    """Another process that takes the lock, says so, and keeps it until killed."""
    code = textwrap.dedent(f"""
        import sys, time
        from latent_abstractions.locking import state_lock
        with state_lock({str(state_dir)!r}):
            print("locked", flush=True)
            time.sleep(120)
    """)
    proc = subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": SRC}
    )
    assert proc.stdout.readline().strip() == "locked"
    return proc


def test_second_locker_fails_at_once_naming_the_holder_and_a_dead_holder_blocks_nothing(tmp_path):
    state = tmp_path / "state" / "uncond"
    holder = hold_lock(state)
    try:
        with pytest.raises(StateLockedError, match=rf"is in use by another trainer \(PID {holder.pid} on "):
            with state_lock(state):
                pass
        with pytest.raises(StateLockedError, match=f"PID {holder.pid}"):
            check_state_free(state)
    finally:
        holder.send_signal(signal.SIGKILL)  # an orphan killed hard: no cleanup code runs
        holder.wait(timeout=30)
    assert (state / "lock").exists()  # the stale file stays, and does not block
    with state_lock(state):
        assert f"PID {os.getpid()} " in (state / "lock").read_text()
    check_state_free(state)


def test_a_second_trainer_stops_before_touching_the_state(tmp_path):
    from latent_abstractions import io
    from latent_abstractions.stages.train import train_score_model

    h5 = tmp_path / "data.h5"
    write_synthetic(h5, GridSpec.from_counts(8, [2] * 6), progress=False)
    io.write_parquet(make_split(64, 0.25, 0), tmp_path / "split.parquet", {})
    state = tmp_path / "state" / "uncond"
    model_dir = tmp_path / "model"
    holder = hold_lock(state)
    try:
        import torch

        with pytest.raises(StateLockedError, match=f"PID {holder.pid}"):
            train_score_model(
                str(h5),
                str(tmp_path / "split.parquet"),
                str(model_dir / "model.pt"),
                str(model_dir / "hparams.json"),
                str(tmp_path / "loss.parquet"),
                model="uncond",
                net=dict(nf=4, ch_mult=[1], num_res_blocks=1, attn_resolutions=[], dropout=0.0, fourier_scale=16.0),
                label_dropout=0.0,
                sigma_min=0.01,
                sigma_max=5.0,
                training=dict(
                    steps=2,
                    batch_size=4,
                    lr=1e-3,
                    warmup_steps=1,
                    grad_clip=1.0,
                    ema_decay=0.9,
                    checkpoint_every=1,
                    log_every=1,
                    bf16=False,
                    tf32=False,
                    compile=False,
                ),
                seed=0,
                state_dir=str(state),
                device=torch.device("cpu"),
            )
    finally:
        holder.kill()
        holder.wait(timeout=30)
    assert sorted(p.name for p in state.iterdir()) == ["lock"]  # no checkpoint written
    assert not model_dir.exists()


@pytest.mark.parametrize("code", [errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS])
def test_a_file_system_without_flock_runs_unlocked_after_one_warning(tmp_path, monkeypatch, caplog, code):
    def no_flock(fd, op):
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(locking.fcntl, "flock", no_flock)
    monkeypatch.setattr(locking, "_warned", set())
    state = tmp_path / "state" / "uncond"
    with caplog.at_level(logging.WARNING, logger="latent_abstractions.locking"):
        check_state_free(state)  # (no lock file yet: nothing to check)
        with state_lock(state) as path:
            assert path.read_text().startswith(f"PID {os.getpid()} ")
        check_state_free(state)
        with state_lock(state):
            pass
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 1, warnings
    assert f"{state}: the file system does not support flock ({os.strerror(code)})" in warnings[0]


def test_other_lock_errors_are_not_hidden(tmp_path, monkeypatch):
    def broken(fd, op):
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(locking.fcntl, "flock", broken)
    with pytest.raises(OSError, match="Input/output error"):
        with state_lock(tmp_path / "state"):
            pass


@pytest.mark.slow  # 65 s on 2 loaded cores; test_a_second_trainer_stops_before_touching_the_state covers the lock
def test_orphaned_trainer_of_a_killed_snakemake_blocks_the_rerun(tmp_path):
    """Snakemake is killed, its training job lives on; after --unlock a rerun's trainer
    must fail at once instead of writing the same state directory."""
    import time

    import psutil
    from conftest import copy_workflow, local_env, run_snakemake, snakemake_exe

    wf = copy_workflow(tmp_path / "wf")
    target = "results/tiny/models/uncond/model.pt"
    args = [
        target,
        "--cores",
        "1",
        "--configfile",
        "config/tiny.yaml",
        "--config",
        "training={steps: 100000, checkpoint_every: 5}",
    ]
    snake = subprocess.Popen(
        [snakemake_exe(), *args],
        cwd=wf,
        env=local_env(),
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    orphans = []
    try:
        ckpt = wf / "results/tiny/state/uncond/checkpoint.pt"
        deadline = time.time() + 300
        while not ckpt.exists():
            assert snake.poll() is None and time.time() < deadline, "training never checkpointed"
            time.sleep(0.2)
        orphans = [
            p
            for p in psutil.Process(snake.pid).children(recursive=True)
            if "train_score_model" in " ".join(p.cmdline())
        ]
        assert orphans
        snake.send_signal(signal.SIGKILL)  # Snakemake dies; its training job does not
        snake.wait(timeout=30)
        assert all(p.is_running() for p in orphans)
        run_snakemake(wf, "--unlock", *args)
        rerun = run_snakemake(wf, *args, timeout=300, check=False)
        assert rerun.returncode != 0
        holder = (wf / "results/tiny/state/uncond/lock").read_text()
        assert holder.startswith("PID ") and int(holder.split()[1]) in {p.pid for p in orphans}
        assert f"is in use by another trainer ({holder.strip()})" in rerun.stdout + rerun.stderr
    finally:
        for p in orphans:
            if p.is_running():
                p.kill()
        if snake.poll() is None:
            os.killpg(snake.pid, signal.SIGKILL)
            snake.wait()
