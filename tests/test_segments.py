"""A training cut into segments by a wall-clock budget: each segment saves and stops, the next resumes.

In the trainer (one process: bitwise equal to an uninterrupted run) and through Snakemake, where the job exits
with status 75 and the rule's retries rerun it, here with two data-parallel processes under torchrun.
"""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import torch
from conftest import copy_workflow, run_snakemake

from latent_abstractions.data.shapes3d import load_shapes3d, load_split
from latent_abstractions.model.sde import VESDE
from latent_abstractions.model.trainer import SegmentEnded, TrainSettings, fit_score_model
from latent_abstractions.runtime import EXIT_RESUME

torch.set_num_threads(1)
NET = dict(img_resolution=16, nf=8, ch_mult=[1, 2], num_res_blocks=1, attn_resolutions=[8], n_levels=[4] * 6)
SDE = VESDE(0.01, 5.0)
RAW = {"name": "none"}  # the raw VE parametrisation (score = F / sigma)


def test_a_training_cut_into_segments_ends_bitwise_equal_to_an_uninterrupted_one(tmp_path):
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (48, 3, 16, 16), dtype=torch.uint8, generator=g)
    labels = torch.randint(0, 4, (48, 6), generator=g)
    base = dict(steps=8, batch_size=8, lr=1e-3, warmup_steps=2, grad_clip=1.0, ema_decay=0.9)
    base.update(checkpoint_every=3, log_every=2, label_dropout=0.3, seed=1)
    cpu = torch.device("cpu")
    full, full_log, _ = fit_score_model(
        images, labels, NET, RAW, SDE, TrainSettings(**base), tmp_path / "a", cpu, False
    )

    # a budget spent at once: every segment stops at its first log row (2 steps), saving there (also between
    # two regular checkpoints, at steps 2 and 4)
    budget = TrainSettings(**base, segment_minutes=1e-9)
    stops = []
    while True:
        try:
            cut, cut_log, info = fit_score_model(images, labels, NET, RAW, SDE, budget, tmp_path / "b", cpu, False)
            break
        except SegmentEnded as stop:
            stops.append(stop.step)
    assert stops == [2, 4, 6] and info["resumed_from"] == 6
    for k, v in full.state_dict().items():
        assert torch.equal(v, cut.state_dict()[k]), k
    np.testing.assert_array_equal(full_log["loss"], cut_log["loss"])
    assert list(cut_log["step"]) == [2, 4, 6, 8]


TARGET = "results/tiny/models/uncond/model.pt"
# a budget spent at once: the first job stops at its first log row (step 10 of 20), the retry finishes
SEGMENTED = "training: {gpus: 2, segment_minutes: 0.00001, max_segments: 3, log_every: 10}\n"


def test_two_processes_in_segments_under_snakemake(tmp_path):
    wf = copy_workflow(tmp_path / "wf")
    (wf / "segmented.yaml").write_text(SEGMENTED)
    args = ["--cores", "2", "--configfile", "config/tiny.yaml", "segmented.yaml"]
    proc = run_snakemake(wf, TARGET, *args, timeout=600)
    out = proc.stdout + proc.stderr
    assert out.count(f"non-zero exit status {EXIT_RESUME}") == 1, out[-4000:]
    assert out.count("Trying to restart job") == 1
    log = (wf / "results/tiny/logs/train_score_model/uncond.log").read_text()  # the last job's
    assert "launching 2 processes" in log and "resumed from step 10 of 20" in log, log[-3000:]
    assert "rank 0 of 2: rows 0-7 of each batch of 16" in log

    # the one-process trajectory of the same settings, in this process: equal up to the float rounding of the
    # two-rank sums (tests/test_ddp.py explains it; measured here, lr 0.002 over 20 steps: weights 1.6e-6 apart,
    # losses a relative 3e-6)
    hp = json.loads((wf / "results/tiny/models/uncond/hparams.json").read_text())
    data = load_shapes3d(wf / "results/tiny/data/shapes3d.h5")
    idx = load_split(wf / "results/tiny/data/split.parquet", data.n)["train"]
    images = torch.from_numpy(data.images(idx)).permute(0, 3, 1, 2)
    settings = TrainSettings(**{**hp["settings"], "segment_minutes": None})
    ref, ref_log, _ = fit_score_model(
        images,
        None,
        hp["net"],
        hp["precond"],
        VESDE(hp["sigma_min"], hp["sigma_max"]),
        settings,
        tmp_path / "ref",
        torch.device("cpu"),
        False,
    )
    ddp = torch.load(wf / TARGET, weights_only=True)
    for k, v in ref.backbone.state_dict().items():  # model.pt holds the backbone's weights
        torch.testing.assert_close(ddp[k], v, rtol=0, atol=1e-5, msg=k)
    np.testing.assert_allclose(
        pd.read_parquet(wf / "results/tiny/models/uncond/loss.parquet")["loss"], ref_log["loss"], rtol=2e-5
    )

    # gpus and the segment settings are execution settings: changing them reruns nothing
    (wf / "segmented.yaml").write_text("training: {gpus: 1, segment_minutes: null, max_segments: 1, log_every: 10}\n")
    dry = run_snakemake(wf, TARGET, "-n", *args, timeout=120)
    assert not re.search(r"^rule train_score_model:", dry.stdout, flags=re.M), dry.stdout[-2000:]
