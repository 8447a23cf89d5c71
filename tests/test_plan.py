"""The cost plan: its measurements against known answers and real runs, its counts against the stages' own forward
calls, its schedule, the batches it sizes, and the paper config's targets."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import ROOT

from latent_abstractions import plan as P
from latent_abstractions.config import load_config
from latent_abstractions.data.factors import N_LEVELS
from latent_abstractions.model.networks import NCSNpp
from latent_abstractions.model.precond import RawVE

TINY_NET = dict(img_resolution=16, nf=8, ch_mult=[1, 2], num_res_blocks=1, attn_resolutions=[8])


def test_live_storage_count_is_exact_on_a_known_sequence():
    """a, b = a + 1 alive together (8,000 bytes); a freed, then c = b * 2: again 8,000; a view adds nothing."""
    mode = P._live_storage_mode()
    with mode:
        a = torch.zeros(1000)
        b = a + 1
        del a
        c = b * 2
        v = c.view(10, 100)
        del v
    assert mode.peak == 8000
    assert c.sum() == 2000


@pytest.mark.parametrize("use", ["forward", "features", "train"])
def test_meta_measurement_equals_the_real_cpu_run_and_is_linear_in_the_batch(use):
    """The meta device's count equals the same count with the real CPU kernels, at every batch size, for inference,
    features and a training step; so peak(B) = fixed + B x row holds exactly from two batch sizes."""
    kw = {**TINY_NET, "n_levels": list(N_LEVELS)}
    meta = [P.run_network("score", kw, use, b, layers=["bottleneck"])[0] for b in (1, 2, 5)]
    cpu = [P.run_network("score", kw, use, b, layers=["bottleneck"], device="cpu")[0] for b in (1, 2, 5)]
    assert meta == cpu
    row = meta[1] - meta[0]
    assert row > 0 and meta[2] == meta[0] + 4 * row


def test_flops_are_the_hand_count_and_training_is_three_forwards_less_the_input_gradients():
    """Forward FLOPs = 2 x MACs of every conv and linear layer + 4 L^2 C per attention (QK^T and AV); a training
    step = 3 x forward less the input-gradient products nobody needs (the first conv's and the embedding's)."""
    kw = dict(img_resolution=8, nf=8, ch_mult=[1], num_res_blocks=2, attn_resolutions=[])
    net = NCSNpp(**kw).eval()
    total = []

    def hook(m, inp, out):
        if isinstance(m, torch.nn.Conv2d):
            total.append(2 * out.numel() * m.in_channels // m.groups * m.kernel_size[0] * m.kernel_size[1])
        elif isinstance(m, torch.nn.Linear):
            total.append(2 * out.numel() * m.in_features)
        else:  # Attention: (B, C, H, W) -> two (L x L x C) products
            b, c, h, w = inp[0].shape
            total.append(4 * b * (h * w) ** 2 * c)

    from latent_abstractions.model.layers import Attention

    for m in net.modules():
        if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear, Attention)):
            m.register_forward_hook(hook)
    with torch.no_grad():
        net(torch.zeros(1, 3, 8, 8), torch.ones(1))
    forward = P.run_network("score", kw, "forward", 1, flops=True)[1]
    train = P.run_network("score", kw, "train", 1, flops=True)[1]
    assert forward == sum(total)
    conv_in, emb0 = 2 * 8 * 8 * 8 * 3 * 9, 2 * net.emb0.out_features * net.emb0.in_features
    assert train == 3 * forward - conv_in - emb0


def test_paper_network_costs_are_those_of_the_paper_widths():
    """The paper's NCSN++ (62.9M parameters): ~85 GFLOP per 64x64 forward, ~30 MiB of live activations per row."""
    config = load_config([ROOT / "config" / "paper.yaml"])
    ctx = P._Context(config, P.ACCELERATORS["h100"], 80.0, 1, 1, 1, 1, P.MFU)
    cost = P.measure_network(ctx.score_kwargs(False), "forward")
    assert cost.param_bytes == pytest.approx(4 * 62.9e6, rel=0.002)
    assert cost.flops / 1e9 == pytest.approx(84.6, rel=0.01)
    assert 25 < cost.row_bytes / 2**20 < 35


# --- counts of a real run ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """The tiny config's stages on its own rendered data and random (untrained) networks, every network row counted."""
    from latent_abstractions.model.checkpoint import save_classifier, save_model
    from latent_abstractions.model.classifier import AttributeClassifier
    from latent_abstractions.stages.dataset import render_shapes3d, split_dataset

    d = tmp_path_factory.mktemp("plan_run")
    cfg = load_config([ROOT / "config" / "tiny.yaml"])
    syn = cfg["dataset"]["synthetic"]
    levels = [syn["levels"][k] for k in ("floor_hue", "wall_hue", "object_hue", "scale", "shape", "orientation")]
    render_shapes3d(d / "data.h5", resolution=syn["resolution"], levels=levels)
    split_dataset(d / "data.h5", d / "split.parquet", test_fraction=cfg["dataset"]["test_fraction"], seed=cfg["seed"])
    ctx = P._Context(cfg, P.ACCELERATORS["h100"], 80.0, 1, 1, 1, 1, P.MFU)
    torch.manual_seed(0)
    for model in ("uncond", "cond"):
        net = RawVE(NCSNpp(**ctx.score_kwargs(model == "cond")))
        for name, p in net.named_parameters():  # untrained but not degenerate: the zero-initialised layers too,
            torch.nn.init.normal_(p, std=2.0 if name.startswith("backbone.label_emb") else 0.05)  # labels that matter
        save_model(d / f"{model}.pt", d / f"{model}.json", net, {**net.hparams, "sigma_min": 0.01, "sigma_max": 3.0})
    clf = AttributeClassifier(syn["resolution"], cfg["classifier"]["width"], [list(range(n)) for n in levels])
    save_classifier(d / "clf.pt", d / "clf.json", clf)
    return d, cfg


class RowCounter:
    """Counts the rows through every NCSNpp pass (forward and forward_features) that computes (not the plan's own
    measurement of the network, which runs on the meta device)."""

    def __init__(self, monkeypatch):
        self.rows = 0
        run = NCSNpp._run

        def counted(net, x, sigma, labels, want):
            self.rows += x.shape[0] if x.device.type != "meta" else 0
            return run(net, x, sigma, labels, want)

        monkeypatch.setattr(NCSNpp, "_run", counted)


def _planned(cfg) -> dict:
    return {r.rule: r.evaluations for r in P.plan(cfg).rules}


def _logged_evaluations(caplog) -> int:
    """The rows the stages logged ("network evaluations: N rows"), summed, and the captured log cleared."""
    found = [int(m) for m in re.findall(r"network evaluations: (\d+) rows", caplog.text)]
    caplog.clear()
    assert found, "no stage logged its network evaluations"
    return sum(found)


def test_evaluations_equal_the_rows_a_real_run_puts_through_the_network(tiny_run, monkeypatch, tmp_path, caplog):
    """The plan's evaluations per rule, the rows through NCSNpp counted from outside, and the count each stage
    logs from the score network's own counter: all three the same."""
    from latent_abstractions.stages.measurements import estimate_mutual_information, extract_features, run_forking
    from latent_abstractions.stages.sample import sample_images
    from latent_abstractions.taus import tau_grid

    d, cfg = tiny_run
    planned = _planned(cfg)
    t = cfg["taus"]
    taus = tau_grid(t["start"], t["stop"], t["n"]).tolist()
    cpu = torch.device("cpu")
    counted, logged = {}, {}
    caplog.set_level("INFO", logger="latent_abstractions")

    counter = RowCounter(monkeypatch)
    s = cfg["sampling"]
    for model in ("uncond", "cond"):
        sample_images(
            d / f"{model}.pt", d / f"{model}.json", d / "clf.pt", d / "clf.json", d / "data.h5", d / "split.parquet",
            tmp_path / f"{model}.h5", tmp_path / f"{model}.png", tmp_path / f"{model}.parquet", model=model,
            n_samples=s["n_samples"], steps=s["steps"], method=s["method"], snr=s["snr"], corrector=s["corrector"],
            batch_size=s["batch_size"], seed=cfg["seed"], device=cpu,
        )  # fmt: skip
    counted["sample_images"] = counter.rows
    logged["sample_images"] = _logged_evaluations(caplog)

    counter = RowCounter(monkeypatch)
    f = cfg["features"]
    extract_features(
        d / "uncond.pt", d / "uncond.json", d / "data.h5", d / "split.parquet", tmp_path / "f.parquet", taus=taus,
        layers=f["layers"], pooling=f["pooling"], grid=f["grid"], n_train=f["n_train"], n_test=f["n_test"],
        batch_size=f["batch_size"], seed=cfg["seed"], device=cpu,
    )  # fmt: skip
    counted["extract_features"] = counter.rows
    logged["extract_features"] = _logged_evaluations(caplog)

    counter = RowCounter(monkeypatch)
    m = cfg["mutual_info"]
    estimate_mutual_information(
        d / "cond.pt", d / "cond.json", d / "data.h5", d / "split.parquet", tmp_path / "mi.parquet", taus=taus,
        n_images=m["n_images"], n_times=m["n_times"], batch_size=m["batch_size"], seed=cfg["seed"], device=cpu,
    )  # fmt: skip
    counted["estimate_mutual_information"] = counter.rows
    logged["estimate_mutual_information"] = _logged_evaluations(caplog)

    counter = RowCounter(monkeypatch)
    k = cfg["forking"]
    run_forking(
        d / "uncond.pt", d / "uncond.json", d / "clf.pt", d / "clf.json", tmp_path / "fk.parquet", tmp_path / "st.h5",
        taus=taus, n_base=k["n_base"], n_forks=k["n_forks"], steps=k["steps"], method=s["method"], snr=s["snr"],
        strip_taus=k["strip_taus"], corrector=k["corrector"], seed=cfg["seed"], device=cpu,
        batch_size=k["batch_size"],
    )  # fmt: skip
    counted["run_forking"] = counter.rows
    logged["run_forking"] = _logged_evaluations(caplog)

    assert counted == {rule: planned[rule] for rule in counted}
    assert logged == counted
    assert all(v > 0 for v in counted.values())


def test_training_evaluations_equal_the_rows_of_a_real_training(tiny_run, monkeypatch, tmp_path, caplog):
    from latent_abstractions.model.sde import VESDE
    from latent_abstractions.model.trainer import fit_score_model
    from latent_abstractions.stages.train import model_training, train_settings

    _, cfg = tiny_run
    cfg = {**cfg, "training": {**cfg["training"], "steps": 3}}
    ctx = P._Context(cfg, P.ACCELERATORS["h100"], 80.0, 1, 1, 1, 1, P.MFU)
    counter = RowCounter(monkeypatch)
    caplog.set_level("INFO", logger="latent_abstractions")
    images = torch.zeros(10, 3, ctx.res, ctx.res, dtype=torch.uint8)
    for i, model in enumerate(("uncond", "cond")):
        settings = train_settings(model_training(cfg["training"], model), label_dropout=0.5, seed=i)
        labels = torch.zeros(10, 6, dtype=torch.long) if model == "cond" else None
        net, raw = ctx.score_kwargs(model == "cond"), {"name": "none"}
        fit_score_model(
            images, labels, net, raw, VESDE(0.01, 3.0), settings, tmp_path / model, torch.device("cpu"), progress=False
        )
    assert counter.rows == _planned(cfg)["train_score_model"] == 2 * 3 * cfg["training"]["batch_size"]
    assert _logged_evaluations(caplog) == counter.rows


# --- batches --------------------------------------------------------------------------------------------------------


def test_batch_sizes_change_no_table(tiny_run, tmp_path):
    """The same forking table, sample images and MI at two batch sizes, and each batch size at most as configured.

    Forks and samples have per-sample generators and MI fixed noise per image, so the batch size changes no draw;
    but the CPU's oneDNN/MKL kernels choose their blocking by the number of rows (1x1 convolutions and small
    linear layers measured), so a row's float32 score can move in its last bit between batch sizes. Discrete
    outputs (fork labels, uint8 samples) are therefore compared exactly and MI to a relative 1e-9.
    """
    from latent_abstractions.model.checkpoint import load_score_model
    from latent_abstractions.model.sampling import generate, sample_seeds
    from latent_abstractions.model.score import get_score_fn
    from latent_abstractions.stages.measurements import estimate_mutual_information, run_forking
    from latent_abstractions.taus import tau_grid

    d, cfg = tiny_run
    taus = tau_grid(0.0, 1.0, 4).tolist()
    cpu = torch.device("cpu")
    fork, mi = {}, {}
    for batch in (16, 3):
        fork[batch] = run_forking(
            d / "uncond.pt", d / "uncond.json", d / "clf.pt", d / "clf.json", tmp_path / f"fk{batch}.parquet",
            tmp_path / f"st{batch}.h5", taus=taus, n_base=3, n_forks=4, steps=6, method="pc", snr=0.16,
            strip_taus=[0.5], seed=1, device=cpu, batch_size=batch,
        )  # fmt: skip
        mi[batch] = estimate_mutual_information(
            d / "cond.pt", d / "cond.json", d / "data.h5", d / "split.parquet", tmp_path / f"mi{batch}.parquet",
            taus=taus, n_images=9, n_times=3, batch_size=7 * batch, seed=1, device=cpu,
        )  # fmt: skip
    assert (tmp_path / "fk16.parquet").read_bytes() == (tmp_path / "fk3.parquet").read_bytes()
    pd.testing.assert_frame_equal(mi[16].drop(columns=["mi", "se"]), mi[3].drop(columns=["mi", "se"]))
    np.testing.assert_allclose(mi[16][["mi", "se"]].to_numpy(), mi[3][["mi", "se"]].to_numpy(), rtol=1e-9, atol=0)
    assert mi[16]["mi"].abs().max() > 1e-4  # not a trivial zero
    model = load_score_model(d / "uncond.pt", d / "uncond.json")
    seeds = sample_seeds(2, 7)
    kw = dict(steps=5, method="pc", snr=0.16, device=cpu, n_corrector=1)
    a = generate(get_score_fn(model.net, model.sde), model.sde, 16, seeds, batch_size=7, **kw)
    b = generate(get_score_fn(model.net, model.sde), model.sde, 16, seeds, batch_size=3, **kw)
    assert np.array_equal(a, b)


def test_a_batch_that_does_not_fit_is_made_smaller_and_one_row_that_does_not_is_an_error():
    cost = P.measure_network(TINY_NET, "forward")
    gb = (cost.fixed_bytes + 10.5 * cost.row_bytes) / P.DEVICE_HEADROOM / 1e9  # room for 10 rows on the CPU
    cpu = torch.device("cpu")
    assert P.fit_batch(256, key="sampling.batch_size", cost=cost, device_memory_gb=gb, device=cpu) == 10
    assert P.fit_batch(4, key="sampling.batch_size", cost=cost, device_memory_gb=gb, device=cpu) == 4
    with pytest.raises(ValueError, match=r"device_memory_gb = .*mutual_info.batch_size needs .* for 11 row"):
        P.fit_batch(77, key="mutual_info.batch_size", cost=cost, device_memory_gb=gb, device=cpu, min_rows=11)
    assert P.resolve_device_memory_gb("auto", cpu) == pytest.approx(P.host_cap_gb())


def test_the_mutual_information_stage_lowers_its_batch_to_the_budget(tiny_run, tmp_path, caplog):
    from latent_abstractions.stages.measurements import estimate_mutual_information

    d, _ = tiny_run
    hp = json.loads((d / "cond.json").read_text())["net"]
    cost = P.measure_network(hp, "forward")
    image = 4 * 3 * 16 * 16
    row = cost.row_bytes + P.ROW_BUFFERS["estimate_mutual_information"] * image
    gb = (cost.fixed_bytes + 8 * image + 15.5 * row) / P.DEVICE_HEADROOM / 1e9  # 15 rows: two images per call
    with caplog.at_level("INFO", logger="latent_abstractions.plan"):
        estimate_mutual_information(
            d / "cond.pt", d / "cond.json", d / "data.h5", d / "split.parquet", tmp_path / "mi.parquet", taus=[0, 1],
            n_images=8, n_times=1, batch_size=700, seed=0, device=torch.device("cpu"), device_memory_gb=gb,
        )  # fmt: skip
    assert "mutual_info.batch_size = 700 rows would need" in caplog.text and "15 rows fit" in caplog.text


# --- the schedule --------------------------------------------------------------------------------------------------


def _job(name, hours, gpus=1, deps=()):
    return P.Job(name, "0", P.Work(seconds=3600 * hours), gpus, tuple(f"{d}:0" for d in deps))


def _makespan(jobs, n_gpus):
    return P._schedule(jobs, lambda j, g: j.work.seconds / 3600 / (g if g > 1 else 1), n_gpus)


def test_schedule_known_answers():
    two = [_job("a", 1), _job("b", 1)]
    assert _makespan(two, 1) == 2 and _makespan(two, 2) == 1
    assert _makespan([_job("a", 1), _job("b", 2, deps=["a"])], 8) == 3  # a chain waits
    # the longest path goes first: with 2 GPUs, c (then d) beside a and b one after the other
    jobs = [_job("a", 1), _job("b", 1), _job("c", 2), _job("d", 1, deps=["c"])]
    assert _makespan(jobs, 2) == 3
    assert _makespan([_job("t", 4, gpus=4)], 2) == 2  # a 4-GPU job on 2 GPUs takes both, at half the speed
    assert _makespan([_job("g", 1), _job("cpu", 5, gpus=0)], 1) == 5  # CPU jobs need no GPU


# --- the paper config ----------------------------------------------------------------------------------------------


def test_paper_plan_fits_80_gb_and_8_gpus_cut_the_critical_path_below_a_quarter():
    config = load_config([ROOT / "config" / "paper.yaml"])
    one = P.plan(config, accelerator="h100", device_memory_gb=80, gpus=1)
    for r in one.rules:
        assert r.peak_device_gib <= 70, r
    by = {r.rule: r for r in one.rules}
    assert by["estimate_mutual_information"].batch < config["mutual_info"]["batch_size"]  # 4,096 rows do not fit
    assert by["run_forking"].batch == config["forking"]["batch_size"]
    eight = P.plan(config, accelerator="h100", device_memory_gb=80, gpus=8, tau_shards=8, training_gpus=4)
    assert eight.critical_path_hours <= one.total_gpu_hours / 4
    assert one.critical_path_hours >= one.total_gpu_hours - 1e-9  # one GPU: nothing overlaps but CPU jobs


def _plan_cli(*args) -> dict:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    proc = subprocess.run(
        [sys.executable, "-m", "latent_abstractions.plan", *args, "--json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_cli_prints_the_documented_object():
    out = _plan_cli("--configfile", str(ROOT / "config" / "tiny.yaml"))
    keys = {"rule", "jobs", "evaluations", "tflop", "gpu_hours", "peak_device_gib", "peak_host_gib", "runtime_min"}
    assert {r["rule"] for r in out["rules"]} >= {"train_score_model", "run_forking", "estimate_mutual_information"}
    assert all(keys | {"mem_mb"} <= set(r) for r in out["rules"])
    assert out["total_gpu_hours"] >= 0 and out["critical_path_hours"] >= 0


def test_slurm_dry_run_of_the_paper_config_requests_what_the_plan_says(workflow_copy):
    from conftest import run_snakemake

    want = {r["rule"]: r for r in _plan_cli("--configfile", str(ROOT / "config" / "paper.yaml"))["rules"]}
    proc = run_snakemake(
        workflow_copy,
        "-n",
        "--forceall",
        "--profile",
        "profiles/slurm",
        "--configfile",
        "config/paper.yaml",
        timeout=600,
    )

    jobs = re.findall(r"^(?:local)?rule (\w+):\n(?:    .*\n)*?    resources: (.*)$", proc.stdout, flags=re.M)
    seen = set()
    for rule, resources in jobs:
        if rule not in want:
            continue
        res = dict(kv.split("=", 1) for kv in resources.split(", "))
        assert int(res["mem_mb"]) == want[rule]["mem_mb"] and int(res["runtime"]) == want[rule]["runtime_min"], rule
        seen.add(rule)
    assert seen == set(want)
