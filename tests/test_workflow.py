"""The whole workflow through Snakemake on the tiny config: lint, dry run, end-to-end run, determinism."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pandas as pd
import pytest
from conftest import TINY_RUN_ARGS, run_snakemake

TINY = ["--configfile", "config/tiny.yaml"]


def test_lint_reports_nothing(workflow_copy):
    proc = run_snakemake(workflow_copy, "--lint", check=False, timeout=120)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert "Lints for" not in out, out


def test_dry_run_lists_every_stage(workflow_copy):
    proc = run_snakemake(workflow_copy, "-n", *TINY, timeout=120)
    jobs = set(re.findall(r"^rule (\w+):", proc.stdout, flags=re.M))
    for rule in (
        "render_shapes3d",
        "split_dataset",
        "train_score_model",
        "train_classifier",
        "sample_images",
        "extract_features",
        "fit_linear_probes",
        "estimate_mutual_information",
        "run_forking",
        "make_report",
    ):
        assert rule in jobs, f"{rule} missing from the dry run:\n{proc.stdout[-3000:]}"
    assert "download_shapes3d" not in jobs  # only the configured dataset source is in the DAG


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_tiny_workflow_end_to_end_and_deterministic(tiny_run):
    workflow_copy = tiny_run
    res = workflow_copy / "results" / "tiny"
    assert (res / "report" / "report.html").stat().st_size > 10_000

    tables = {
        name: pd.read_parquet(res / "tables" / f"{name}.parquet") for name in ("probes", "mutual_info", "forking")
    }
    n_tau = 4  # config/tiny.yaml taus.n
    for name, df in tables.items():
        assert set(df["factor"]) == {"floor_hue", "wall_hue", "object_hue", "scale", "shape", "orientation"}, name
        assert df["tau"].nunique() == n_tau, name
    # Known answers: forks started at the data end (tau = 1) are the same image, so every factor's fork entropy
    # is 0 there; the MI estimate is 0 at tau = 0 and, an integral of a non-negative integrand, never falls.
    fork = tables["forking"]
    assert (fork.loc[fork["tau"] == 1.0, "entropy"] == 0).all()
    mi = tables["mutual_info"].sort_values(["factor", "tau"])
    assert (mi.loc[mi["tau"] == 0.0, "mi"] == 0).all()
    assert (mi.groupby("factor")["mi"].diff().dropna() >= 0).all()

    # Nothing left to do, and the same config gives the same Parquet when recomputed.
    proc = run_snakemake(workflow_copy, "-n", *TINY, timeout=120)
    assert "Nothing to be done" in proc.stdout + proc.stderr
    before = {p.name: _digest(p) for p in (res / "tables").glob("*.parquet")}
    run_snakemake(
        workflow_copy,
        *TINY_RUN_ARGS,
        "--forcerun",
        "extract_features",
        "estimate_mutual_information",
        "run_forking",
        timeout=900,
    )
    after = {p.name: _digest(p) for p in (res / "tables").glob("*.parquet")}
    for name in ("probes.parquet", "mutual_info.parquet", "forking.parquet"):
        assert after[name] == before[name], f"{name} changed when recomputed with the same config"


def test_dataset_source_path_uses_the_users_file(workflow_copy, tmp_path):
    missing = tmp_path / "absent.h5"
    (workflow_copy / "path.yaml").write_text(f"dataset: {{source: path, path: {missing}}}\n")
    proc = run_snakemake(workflow_copy, "-n", *TINY, "path.yaml", check=False, timeout=120)
    assert (
        proc.returncode != 0
        and "dataset.path" in proc.stdout + proc.stderr
        and str(missing) in proc.stdout + proc.stderr
    )
    from latent_abstractions.data.render import GridSpec
    from latent_abstractions.data.shapes3d import write_synthetic

    mine = tmp_path / "mine.h5"
    write_synthetic(mine, GridSpec.from_counts(8, [2] * 6), progress=False)
    (workflow_copy / "path.yaml").write_text(f"dataset: {{source: path, path: {mine}}}\n")
    proc = run_snakemake(workflow_copy, "-n", *TINY, "path.yaml", timeout=120)
    jobs = set(re.findall(r"^rule (\w+):", proc.stdout, flags=re.M))
    assert "split_dataset" in jobs and not jobs & {"render_shapes3d", "download_shapes3d"}
    assert str(mine) in proc.stdout  # the user's file is read in place, not copied


MEASUREMENT_RULES = {"extract_features", "fit_linear_probes", "estimate_mutual_information", "run_forking"}


@pytest.mark.parametrize(
    "patch, expected",
    [
        # the sample count feeds only the sample rule; forking takes the sampler's method and snr, not n_samples
        ("sampling: {n_samples: 5}", {"sample_images", "plot_samples_forks", "make_report", "all"}),
        (
            "probes: {C: 0.5}",
            {"fit_linear_probes", "plot_probes", "make_emergence_table", "plot_agreement", "make_report", "all"},
        ),
        # label dropout is the conditional model's only: the unconditional model and its dependents stay
        (
            "score_model: {label_dropout: 0.5}",
            {
                "train_score_model",
                "sample_images",
                "estimate_mutual_information",
                "plot_mutual_info",
                "plot_training_loss",
                "make_emergence_table",
                "plot_agreement",
                "make_report",
                "all",
            },
        ),
    ],
)
def test_a_config_change_reruns_exactly_the_rules_that_use_it(tiny_run, patch, expected):
    (tiny_run / "patch.yaml").write_text(patch + "\n")
    proc = run_snakemake(tiny_run, "-n", *TINY, "patch.yaml", timeout=120)
    jobs = set(re.findall(r"^(?:local)?rule (\w+):", proc.stdout, flags=re.M))
    assert jobs == expected, proc.stdout[-3000:]
    assert not jobs & MEASUREMENT_RULES - expected
    if "label_dropout" in patch:
        assert "model=uncond" not in proc.stdout
    assert "Params have changed since last execution" in proc.stdout
