"""Data-parallel training (DDP over gloo on the CPU, two processes) against one process, and micro-batches.

Tolerance. Two ranks compute the same global batch as one process, drawn from the same seeded stream (each rank
keeps its half), so the only difference is the order of the floating-point sums: each half's gradient is summed
over its 8 rows and the two halves are then added (DDP's all-reduce), where one process sums all 16 rows in one
backward pass. That moves a gradient by a few float32 ulps (relative ~1e-7). Adam normalises each step by the
gradient's running scale, so a relative error passes to the update about as is, and it accumulates only slowly
over the steps. Measured here (EMA weights of order 0.1-1): after 8 steps the weights differ by at most 1.2e-7
(micro-batches of 5: 7e-8) and the logged losses by a relative 1.6e-7; after 40 steps, 6e-7 and 1.6e-7. The
tests allow 1e-5 on the weights and a relative 2e-6 on the losses: ten times the measured drift and more, and far
below what a different draw does (another seed moves the logged losses by 0.5-3 %).
"""

from __future__ import annotations

import os
import shutil
import socket
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp
import yaml
from conftest import ROOT, local_env

from latent_abstractions.model import trainer as trainer_mod
from latent_abstractions.model.losses import LogUniformSigma, draw_noise, dsm_loss
from latent_abstractions.model.networks import NCSNpp
from latent_abstractions.model.precond import RawVE
from latent_abstractions.model.sde import VESDE
from latent_abstractions.model.trainer import TrainSettings, fit_score_model
from latent_abstractions.runtime import join_process_group

torch.set_num_threads(1)
# the tiny network of config/tiny.yaml, conditional (its label embeddings take part in the reduction too)
NET = dict(img_resolution=16, nf=8, ch_mult=[1, 2], num_res_blocks=1, attn_resolutions=[8], n_levels=[4] * 6)
SDE = VESDE(0.01, 5.0)
RAW = {"name": "none"}  # the raw VE parametrisation (score = F / sigma)
STEPS, DIE_AT = 8, 4
WEIGHT_ATOL, LOSS_RTOL = 1e-5, 2e-6


def settings(**kw) -> TrainSettings:
    base = dict(
        steps=STEPS,
        batch_size=16,
        lr=1e-3,
        warmup_steps=2,
        grad_clip=1.0,
        ema_decay=0.9,
        checkpoint_every=2,
        log_every=2,
        label_dropout=0.3,
        seed=5,
    )
    return TrainSettings(**{**base, **kw})


def tiny_data():
    g = torch.Generator().manual_seed(0)
    return (
        torch.randint(0, 256, (48, 3, 16, 16), dtype=torch.uint8, generator=g),
        torch.randint(0, 4, (48, 6), generator=g),
    )


def _rank(rank: int, world: int, port: int, state_dir: str, out: str, die_at: int | None, net: dict) -> None:
    """One gloo rank (torch.multiprocessing.spawn's target): train, and rank 0 saves what it returns."""
    os.environ.update(
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank)
    )
    torch.set_num_threads(1)
    ranks = join_process_group("cpu")
    if die_at is not None:  # rank 0 dies the moment its checkpoint at step die_at is on disk
        real_save = trainer_mod._save_checkpoint

        def save_then_die(state_dir, hparams, payload):
            real_save(state_dir, hparams, payload)
            if payload["step"] == die_at:
                os._exit(9)

        trainer_mod._save_checkpoint = save_then_die
    net, losses, info = fit_score_model(
        *tiny_data(), net, RAW, SDE, settings(), state_dir, torch.device("cpu"), progress=False, ranks=ranks
    )
    if ranks.is_main:
        torch.save({"weights": net.state_dict(), "loss": losses["loss"].to_numpy(), "info": info}, out)
    torch.distributed.destroy_process_group()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_two_ranks(state_dir: Path, out: Path, die_at: int | None = None, net: dict = NET) -> dict:
    # fork: the ranks inherit the imported modules (a spawned rank spends seconds importing torch again)
    args = (2, free_port(), str(state_dir), str(out), die_at, net)
    mp.start_processes(_rank, args=args, nprocs=2, join=True, start_method="fork")
    return torch.load(out, weights_only=False)


def one_process(state_dir: Path, **kw):
    net, losses, info = fit_score_model(
        *tiny_data(), NET, RAW, SDE, settings(**kw), state_dir, torch.device("cpu"), progress=False
    )
    return {"weights": net.state_dict(), "loss": losses["loss"].to_numpy(), "info": info}


def assert_close(a: dict, b: dict) -> float:
    np.testing.assert_allclose(a["loss"], b["loss"], rtol=LOSS_RTOL)
    worst = 0.0
    for k, v in a["weights"].items():
        torch.testing.assert_close(v, b["weights"][k], rtol=0, atol=WEIGHT_ATOL, msg=k)
        worst = max(worst, float((v - b["weights"][k]).abs().max()))
    return worst


def assert_equal(a: dict, b: dict) -> None:
    np.testing.assert_array_equal(a["loss"], b["loss"])
    for k, v in a["weights"].items():
        assert torch.equal(v, b["weights"][k]), k


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """One process and two ranks, uninterrupted, on the same global batch."""
    tmp = tmp_path_factory.mktemp("ddp")
    return {"one": one_process(tmp / "one"), "two": run_two_ranks(tmp / "two", tmp / "two.pt")}


def test_two_ranks_follow_the_one_process_trajectory(runs):
    one, two = runs["one"], runs["two"]
    assert len(one["loss"]) == len(two["loss"]) == STEPS // 2
    worst = assert_close(one, two)
    print(f"\nlargest weight difference, 2 ranks vs 1 process after {STEPS} steps: {worst:.2e}")
    # ... and they did differ in rounding: the test compares two really different reductions
    assert any(not torch.equal(v, two["weights"][k]) for k, v in one["weights"].items())


def test_a_killed_two_rank_run_resumes_to_the_same_result(runs, tmp_path):
    with pytest.raises((mp.ProcessExitedException, mp.ProcessRaisedException)):  # rank 0 dies: the job fails
        run_two_ranks(tmp_path / "state", tmp_path / "killed.pt", die_at=DIE_AT)
    assert torch.load(tmp_path / "state" / "checkpoint.pt", weights_only=True)["step"] == DIE_AT
    shutil.copytree(tmp_path / "state", tmp_path / "state_for_one")
    resumed = run_two_ranks(tmp_path / "state", tmp_path / "resumed.pt")
    assert resumed["info"]["resumed_from"] == DIE_AT
    assert_equal(resumed, runs["two"])  # the same ranks, the same sums: bitwise

    # the two-rank state finished on one process: the one-process trajectory, up to the rounding above
    on_one = one_process(tmp_path / "state_for_one")
    assert on_one["info"]["resumed_from"] == DIE_AT
    assert_close(on_one, runs["one"])


def test_each_rank_draws_its_own_dropout_masks_and_a_resumed_run_redraws_them(runs, tmp_path):
    # with dropout the ranks' masks come from streams of their own (rng.rank_step_seed), reseeded at every step:
    # a run killed after a checkpoint and resumed repeats the uninterrupted run's masks, bitwise
    net = {**NET, "dropout": 0.3}
    full = run_two_ranks(tmp_path / "full", tmp_path / "full.pt", net=net)
    with pytest.raises((mp.ProcessExitedException, mp.ProcessRaisedException)):
        run_two_ranks(tmp_path / "cut", tmp_path / "killed.pt", die_at=DIE_AT, net=net)
    resumed = run_two_ranks(tmp_path / "cut", tmp_path / "resumed.pt", net=net)
    assert resumed["info"]["resumed_from"] == DIE_AT
    assert_equal(resumed, full)
    # (the masks were drawn: without dropout the losses part by more than rounding, here a relative 2.4e-4)
    assert np.abs(full["loss"] / runs["two"]["loss"] - 1).max() > 10 * LOSS_RTOL


def test_micro_batches_sum_to_the_whole_batch_gradient():
    torch.manual_seed(0)
    net = RawVE(NCSNpp(**NET))
    images, labels = tiny_data()
    x0, y = images[:16].float() / 255, labels[:16]
    sampler = LogUniformSigma(SDE)
    noise = draw_noise(sampler, tuple(x0.shape), "cpu", torch.Generator().manual_seed(1))

    def gradients(parts):
        net.zero_grad()
        for a, b in parts:  # each pass weighted by its share of the batch, as the trainer does
            (
                dsm_loss(net, x0[a:b], y[a:b], sampler=sampler, noise=(noise[0][a:b], noise[1][a:b])) * ((b - a) / 16)
            ).backward()
        return {k: p.grad.clone() for k, p in net.named_parameters()}

    whole = gradients([(0, 16)])
    uneven = gradients([(0, 5), (5, 10), (10, 15), (15, 16)])
    for k, g in whole.items():
        torch.testing.assert_close(uneven[k], g, rtol=1e-5, atol=1e-6 * float(g.abs().max()), msg=k)
    # the weights matter: unweighted passes give (16 / 5)x, 16x ... the gradient of their rows, not the batch's
    net.zero_grad()
    for a, b in [(0, 5), (5, 10), (10, 15), (15, 16)]:
        dsm_loss(net, x0[a:b], y[a:b], sampler=sampler, noise=(noise[0][a:b], noise[1][a:b])).backward()
    flat = torch.cat([p.grad.flatten() for p in net.parameters()])
    assert not torch.allclose(flat, torch.cat([g.flatten() for g in whole.values()]), rtol=1e-2)


def test_micro_batched_training_follows_the_one_pass_trajectory(runs, tmp_path):
    # micro_batch 5 of 16 goes through the split path (the batch's noise drawn once, then sliced): the same draws
    # as one pass, so only the sums' order differs
    micro = one_process(tmp_path, micro_batch=5)
    assert_close(micro, runs["one"])
    assert any(not torch.equal(v, runs["one"]["weights"][k]) for k, v in micro["weights"].items())


def test_the_slurm_profile_runs_a_multi_gpu_training_as_one_task_on_one_node(monkeypatch):
    """The sbatch and job-step lines the pinned Slurm plugin builds for the profile's training job at 8 GPUs."""
    # the plugin probes `scontrol` when imported: the stand-in answers at once where no controller runs
    monkeypatch.setenv("PATH", local_env()["PATH"])
    from snakemake_executor_plugin_slurm.submit_string import get_submit_command
    from snakemake_executor_plugin_slurm.utils import set_gres_string
    from snakemake_executor_plugin_slurm_jobstep import get_cpu_setting, get_gpu_setting, get_node_setting

    class Resources(dict):
        __getattr__ = dict.__getitem__

    profile = yaml.safe_load((ROOT / "profiles/slurm/config.yaml").read_text())
    resources = Resources({**profile["set-resources"]["train_score_model"], "gpu": 8, "mem_mb": 64000, "runtime": 240})
    job = SimpleNamespace(resources=resources, threads=8)
    params = dict(
        run_uuid="run", slurm_logfile="job.log", comment_str="rule_train", account="", partition="", workdir=""
    )
    sbatch = (get_submit_command(job, params) + set_gres_string(job)).split()
    step = [get_cpu_setting(job, True), get_gpu_setting(job), get_node_setting(job)]
    # all 8 GPUs, one node, one task (Slurm's default: no --ntasks or --ntasks-per-gpu), CPUs per GPU
    assert {"--gpus=8", "--nodes=1", f"--cpus-per-gpu={resources['cpus_per_gpu']}"} <= set(sbatch), sbatch
    assert not [arg for arg in sbatch if arg.startswith("--ntasks")], sbatch
    # the job step (the plugin's `srun -n1 ...`) sees the same GPUs and CPUs: torchrun starts the 8 processes
    assert step == [f"--cpus-per-gpu={resources['cpus_per_gpu']}", "--gpus=8", "--nodes=1"]
