"""Figures and the HTML report build from tables of the documented schemas; single figures are lone targets."""

import re

import numpy as np
import pandas as pd
import pytest
from conftest import run_snakemake

from latent_abstractions.data.factors import FACTOR_NAMES
from latent_abstractions.measure.emergence import MEASUREMENTS, emergence_table, factor_order
from latent_abstractions.report import plots as plotting
from latent_abstractions.report.html import write_report

TAUS = np.linspace(0, 1, 6)


def tables():
    rows_p, rows_m, rows_f = [], [], []
    for i, factor in enumerate(FACTOR_NAMES):
        s = 1 / (1 + np.exp(-(TAUS - 0.2 - 0.1 * i) * 15))
        for layer, scale in (("bottleneck", 1.0), ("pixels", 0.8)):
            for tau, v in zip(TAUS, s):
                acc = 0.25 + 0.75 * v * scale
                rows_p.append(
                    dict(
                        tau=tau,
                        factor=factor,
                        layer=layer,
                        accuracy=acc,
                        ci_low=acc - 0.05,
                        ci_high=acc + 0.05,
                        chance=0.25,
                        n_levels=4,
                        n_train=10,
                        n_test=5,
                        seed=0,
                        checkpoint="x",
                    )
                )
        for tau, v in zip(TAUS, s):
            rows_m.append(
                dict(
                    tau=tau,
                    factor=factor,
                    mi=np.log(4) * v,
                    se=0.02,
                    ceiling=np.log(4),
                    n_levels=4,
                    n_images=8,
                    n_times=4,
                    seed=0,
                    checkpoint="x",
                )
            )
            rows_f.append(
                dict(
                    tau=tau,
                    factor=factor,
                    entropy=1 - v,
                    ci_low=max(0, 0.9 - v),
                    ci_high=min(1, 1.1 - v),
                    n_levels=4,
                    n_base=2,
                    n_forks=2,
                    seed=0,
                    checkpoint="x",
                )
            )
    return pd.DataFrame(rows_p), pd.DataFrame(rows_m), pd.DataFrame(rows_f)


def test_figures_and_self_contained_report(tmp_path):
    probes, mi, forking = tables()
    figs = {
        "probes": tmp_path / "probes.pdf",
        "mutual_info": tmp_path / "mutual_info.pdf",
        "forking": tmp_path / "forking.pdf",
        "training_loss": tmp_path / "training_loss.pdf",
        "samples_forks": tmp_path / "samples_forks.pdf",
    }
    plotting.draw_probes(probes, figs["probes"])
    plotting.draw_mutual_info(mi, figs["mutual_info"])
    plotting.draw_forking(forking, figs["forking"])
    loss = pd.DataFrame({"step": [1, 2, 3], "loss": [3.0, 2.0, 1.5]})
    plotting.draw_training_loss({"uncond": loss, "cond": loss}, figs["training_loss"])
    imgs = np.random.default_rng(0).integers(0, 255, (8, 8, 8, 3), dtype=np.uint8)
    plotting.draw_samples_forks(imgs, imgs[None, :4].repeat(2, 0), np.array([0.2, 0.6]), figs["samples_forks"])
    for path in figs.values():
        assert path.stat().st_size > 1000 and path.with_suffix(".png").stat().st_size > 1000
    em, agree = emergence_table(
        {"probes": probes[probes.layer == "bottleneck"], "mutual_info": mi, "forking": forking}, [0.5, 0.9], 20, 0
    )
    bench = tmp_path / "bench" / "train_score_model"
    bench.mkdir(parents=True)
    (bench / "uncond.tsv").write_text("s\th:m:s\tmax_rss\n12.5\t0:00:12\t300.0\n")
    (bench / "stale_job.tsv").write_text("s\th:m:s\tmax_rss\n99.5\t0:01:39\t300.0\n")  # not an input: not shown
    acc = pd.DataFrame({"factor": FACTOR_NAMES, "accuracy": 0.99, "n_levels": 4, "n_test": 10, "seed": 0})
    scores = pd.DataFrame({"factor": FACTOR_NAMES, "tv_distance": 0.1, "n_samples": 8, "seed": 0, "checkpoint": "x"})
    out = tmp_path / "report" / "report.html"
    write_report(
        out,
        config={"run_name": "t", "dataset": {"source": "synthetic", "synthetic": {"resolution": 16, "levels": {}}}},
        figures={k: v.with_suffix(".png") for k, v in figs.items()},
        captions={k: f"{k} caption." for k in figs},
        emergence=em,
        agreement=agree,
        classifier_accuracy=acc,
        sample_scores={"uncond": scores},
        hparams={"uncond": {"n_params": 1234, "settings": {"steps": 5}}},
        benchmarks=[bench / "uncond.tsv"],
        orders={m: factor_order(em, m, 0.5) for m in MEASUREMENTS},
    )
    text = out.read_text()
    assert text.count("data:image/png;base64,") == 5
    assert not re.search(r'(src|href)="(http|file|/)', text), "the report must not reference external files"
    assert "Emergence table" in text and "floor_hue" in text and "train_score_model" in text and "12.5" in text
    assert "stale_job" not in text and "99.5" not in text


def test_single_figure_dry_run_lists_only_its_ancestors(workflow_copy):
    proc = run_snakemake(
        workflow_copy, "results/tiny/figures/probes.pdf", "-n", "--configfile", "config/tiny.yaml", timeout=120
    )
    jobs = set(re.findall(r"^rule (\w+):", proc.stdout, flags=re.M))
    assert {"plot_probes", "fit_linear_probes", "extract_features", "train_score_model"} <= jobs, jobs
    assert not jobs & {
        "estimate_mutual_information",
        "run_forking",
        "train_classifier",
        "make_report",
        "sample_images",
        "plot_mutual_info",
    }, jobs


def test_falling_crossing_is_measured_from_the_start():
    from latent_abstractions.measure.emergence import crossing_tau

    taus = np.array([0.0, 0.5, 1.0])
    # Entropy that falls from 0.8 to 0.2: half its fall (0.5) is reached halfway between the first two points.
    assert crossing_tau(taus, np.array([0.8, 0.2, 0.2]), 0.5, rising=False) == pytest.approx(0.25)
    # A curve that starts at its minimum never falls from its start: no crossing (not tau = 0).
    assert np.isnan(crossing_tau(taus, np.array([0.0, 0.5, 0.0]), 0.5, rising=False))
    # Rising curves use their full range.
    assert crossing_tau(taus, np.array([0.1, 0.1, 0.9]), 0.5, rising=True) == pytest.approx(0.75)
