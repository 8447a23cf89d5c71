"""One trainer per state directory (issue 13, item 6), tested with real processes."""

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from latent_abstractions.locking import StateLockedError, check_state_free, state_lock
from latent_abstractions.render import GridSpec
from latent_abstractions.shapes3d import make_split, write_synthetic

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
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": SRC})
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
            train_score_model(str(h5), str(tmp_path / "split.parquet"), str(model_dir / "model.pt"),
                              str(model_dir / "hparams.json"), str(tmp_path / "loss.parquet"), model="uncond",
                              net=dict(nf=4, ch_mult=[1], num_res_blocks=1, attn_resolutions=[], dropout=0.0,
                                       fourier_scale=16.0),
                              label_dropout=0.0, sigma_min=0.01, sigma_max=5.0,
                              training=dict(steps=2, batch_size=4, lr=1e-3, warmup_steps=1, grad_clip=1.0,
                                            ema_decay=0.9, checkpoint_every=1, log_every=1, bf16=False, tf32=False,
                                            compile=False),
                              seed=0, state_dir=str(state), device=torch.device("cpu"))
    finally:
        holder.kill()
        holder.wait(timeout=30)
    assert sorted(p.name for p in state.iterdir()) == ["lock"]  # no checkpoint written
    assert not model_dir.exists()
