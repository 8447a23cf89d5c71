"""benchmarks/rehearsal.py's comparison: a run that matches the plan passes; a wrong count, a job over its mem_mb
or a missing benchmark is a problem named by its rule."""

import importlib.util

import pytest
from conftest import ROOT

from latent_abstractions import plan as P
from latent_abstractions.config import load_config


@pytest.fixture(scope="module")
def rehearsal():
    spec = importlib.util.spec_from_file_location("rehearsal_script", ROOT / "benchmarks" / "rehearsal.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


HEADER = "s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time\n"


def fake_run(tmp_path, config, rss_fraction=0.5, skew=0):
    """A results directory as the workflow leaves it: one benchmark and one log per job of every planned rule,
    the network rules' logs split over two jobs as the two score models split them."""
    for r in P.plan(config, threads=1).rules:
        (tmp_path / "benchmarks" / r.rule).mkdir(parents=True)
        (tmp_path / "logs" / r.rule).mkdir(parents=True)
        jobs = ["uncond", "cond"] if r.rule in ("train_score_model", "sample_images") else [r.rule]
        for i, job in enumerate(jobs):
            rss = rss_fraction * r.mem_mb
            (tmp_path / "benchmarks" / r.rule / f"{job}.tsv").write_text(
                HEADER + f"12.5\t0:00:12\t{rss}\t1\t1\t1\t0\t0\t50.0\t10\n"
            )
            rows = r.evaluations // len(jobs) + (r.evaluations % len(jobs) if i == 0 else 0) + (skew if i else 0)
            (tmp_path / "logs" / r.rule / f"{job}.log").write_text(
                "2026-01-01 INFO latent_abstractions: device: cpu\n"
                + (f"2026-01-01 INFO x: network evaluations: {rows} rows (test)\n" if r.rule in P_NETWORK else "")
            )
    return tmp_path


P_NETWORK = ("train_score_model", "sample_images", "extract_features", "estimate_mutual_information", "run_forking")


def test_a_run_that_matches_the_plan_has_no_problems(rehearsal, tmp_path):
    assert rehearsal.NETWORK_RULES == P_NETWORK
    config = load_config([ROOT / "config" / "tiny.yaml"])
    rows, problems, _ = rehearsal.compare(config, fake_run(tmp_path, config))
    assert problems == []
    by = {r["rule"]: r for r in rows}
    assert by["train_score_model"]["evaluations_counted"] == by["train_score_model"]["evaluations_planned"] > 0
    assert by["sample_images"]["seconds"] == 25.0 and by["sample_images"]["jobs"] == 2
    assert by["compute_exact_filter"]["evaluations_counted"] is None  # not the score network
    assert "| train_score_model | 2 |" in rehearsal.markdown(rows, P.plan(config).assumptions, None)


def test_a_wrong_count_a_job_over_its_memory_and_a_missing_rule_are_problems(rehearsal, tmp_path):
    config = load_config([ROOT / "config" / "tiny.yaml"])
    results = fake_run(tmp_path, config, rss_fraction=1.01, skew=1)
    (results / "benchmarks" / "run_forking" / "run_forking.tsv").unlink()
    _, problems, _ = rehearsal.compare(config, results)
    # one row too many in the second job: only the rules with two jobs
    miscounted = {p.split(":")[0] for p in problems if "evaluations counted, the plan predicts" in p}
    assert miscounted == {"train_score_model", "sample_images"}
    over = {p.split(" ")[0] for p in problems if "> mem_mb" in p}
    assert over == {r.rule for r in P.plan(config).rules} - {"run_forking"}
    assert "run_forking: no benchmark in " + str(results / "benchmarks" / "run_forking") in problems
