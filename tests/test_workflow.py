"""The whole workflow through Snakemake on the tiny config: lint, dry run, end-to-end run, determinism."""

from __future__ import annotations

import hashlib
import re
import shutil
from pathlib import Path

import h5py
import numpy as np
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
    # MI and forking run on the network and on the exact score; the exact-score jobs read no network file
    for rule, table in (("estimate_mutual_information", "mutual_info"), ("run_forking", "forking")):
        blocks = re.findall(rf"^rule {rule}:\n((?:    .*\n)+)", proc.stdout, flags=re.M)
        exact = [b for b in blocks if f"tables/{table}_exact.parquet" in b]
        network = [b for b in blocks if f"tables/{table}.parquet" in b]
        assert len(blocks) == 2 and len(exact) == 1 and len(network) == 1, blocks
        score_net = re.compile(r"models/(un)?cond/model\.pt")  # the classifier still labels the forks
        assert score_net.search(network[0]) and not score_net.search(exact[0].split("output:")[0]), blocks

    # without the exact-score controls (config/paper.yaml), only the network's MI and forking run, and the
    # agreement table and figure are built from the network's tables alone
    off = run_snakemake(workflow_copy, "-n", *TINY, "--config", "exact_score_controls=false", timeout=120).stdout
    assert "_exact.parquet" not in off and re.search(r"^rule make_emergence_table:", off, flags=re.M), off[-3000:]


def _job_counts(dry_run_stdout: str) -> dict[str, int]:
    """{rule: jobs} from a dry run's "Job stats" table."""
    table = dry_run_stdout.split("Job stats:")[1].split("total")[0]
    return {rule: int(n) for rule, n in re.findall(r"^(\w+)\s+(\d+)$", table, flags=re.M)}


SHARDED = {  # per-tau rule -> (its gather, scores it runs on)
    "extract_features": ("gather_features", 1),
    "fit_linear_probes": ("gather_linear_probes", 1),
    "estimate_mutual_information": ("gather_mutual_information", 2),
    "run_forking": ("gather_forking", 2),
}


def test_tau_shards_make_one_job_per_shard_and_one_gather(workflow_copy):
    one = _job_counts(run_snakemake(workflow_copy, "-n", *TINY, timeout=120).stdout)
    two = _job_counts(run_snakemake(workflow_copy, "-n", *TINY, "--config", "tau_shards=2", timeout=120).stdout)
    for rule, (gather, scores) in SHARDED.items():
        assert one[rule] == scores and gather not in one, one  # unsharded: no gather jobs
        assert two[rule] == 2 * scores and two[gather] == scores, two
    others = {r: n for r, n in two.items() if r not in SHARDED and r not in {g for g, _ in SHARDED.values()}}
    assert others == {r: n for r, n in one.items() if r not in SHARDED}, (one, two)
    proc = run_snakemake(workflow_copy, "-n", *TINY, "--config", "tau_shards=5", check=False, timeout=120)
    assert proc.returncode != 0 and "tau_shards = 5: more shards than the 4 taus" in proc.stdout + proc.stderr


def test_tau_shards_gather_the_unsharded_tables_byte_for_byte(tiny_run, tmp_path):
    # the reference run's files, then its measurements again in 2 tau shards (the models are reused)
    wf = tmp_path / "wf"
    shutil.copytree(tiny_run, wf, ignore=shutil.ignore_patterns(".snakemake"))
    res, ref = wf / "results" / "tiny", tiny_run / "results" / "tiny"
    finals = [
        "features/features.parquet",
        "tables/probes.parquet",
        *(f"tables/{m}{s}.parquet" for m in ("mutual_info", "forking") for s in ("", "_exact")),
    ]
    for name in finals:
        (res / name).unlink()
    for score in ("", "_exact"):  # forking's per-tau partial results would let the shards skip their forks
        shutil.rmtree(res / "state" / f"forking{score}")
    targets = [f"results/tiny/{name}" for name in finals]
    proc = run_snakemake(wf, *targets, *TINY_RUN_ARGS, "--config", "tau_shards=2", timeout=900)
    done = re.findall(r"^(?:local)?rule (\w+):", proc.stdout + proc.stderr, flags=re.M)
    assert sorted(set(done)) == sorted([*SHARDED, *(g for g, _ in SHARDED.values())]), done
    for name in finals:
        assert _digest(res / name) == _digest(ref / name), name
    with h5py.File(res / "forking/strips.h5") as a, h5py.File(ref / "forking/strips.h5") as b:
        assert np.array_equal(a["images"][...], b["images"][...]) and np.array_equal(a["taus"][...], b["taus"][...])


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_tiny_workflow_end_to_end_and_deterministic(tiny_run):
    workflow_copy = tiny_run
    res = workflow_copy / "results" / "tiny"
    assert (res / "report" / "report.html").stat().st_size > 10_000

    names = ("probes", "mutual_info", "forking", "mutual_info_exact", "forking_exact")
    tables = {name: pd.read_parquet(res / "tables" / f"{name}.parquet") for name in names}
    n_tau = 4  # config/tiny.yaml taus.n
    for name, df in tables.items():
        assert set(df["factor"]) == {"floor_hue", "wall_hue", "object_hue", "scale", "shape", "orientation"}, name
        assert df["tau"].nunique() == n_tau, name
    exact = pd.read_parquet(res / "tables" / "exact_filter.parquet")
    exact = exact[exact["mixture"] == "all"].set_index(["factor", "tau"])

    # Known answers: MI and forking measured on the exact score (no network) against the exact filter, which is
    # computed another way (from the posterior over the file's images). They fail if the MI estimator, the sampler,
    # the exact score, the SDE the rules share or the forks' labelling is wrong. On the tiny complete grid:
    # the MI estimate of I(Y_tau) - I(Y_0) within 3 SE of the exact filter's at every tau (both are Monte Carlo
    # estimates: the SE of their difference holds the estimator's and the filter's at tau and at tau = 0)...
    mi = tables["mutual_info_exact"]
    ref = exact.loc[mi.set_index(["factor", "tau"]).index]
    gain = (ref["mi"] - ref["mi_at_noise"]).to_numpy()
    noise_se = exact.xs(0.0, level="tau")["mi_se"].reindex(mi["factor"]).to_numpy()
    se = np.sqrt(mi["se"].to_numpy() ** 2 + ref["mi_se"].to_numpy() ** 2 + noise_se**2)
    off = np.abs(mi["mi"].to_numpy() - gain) > 3 * se + 1e-9
    assert not off.any(), mi.assign(exact=gain, se_both=se)[off]
    assert gain.max() > 0.5  # not two curves near zero
    # ...and the mean fork entropy inside the range where the same measurement (as many bases and forks) lands on
    # the exact law 95% of the time; late in generation that range is [0, 0]: every fork of every base must agree.
    fork = tables["forking_exact"]
    ref = exact.loc[fork.set_index(["factor", "tau"]).index]
    inside = (ref["entropy_k_low"].to_numpy() - 1e-9 <= fork["entropy"].to_numpy()) & (
        fork["entropy"].to_numpy() <= ref["entropy_k_high"].to_numpy() + 1e-9
    )
    assert inside.all(), fork.assign(low=ref["entropy_k_low"].to_numpy(), high=ref["entropy_k_high"].to_numpy())
    late = sorted(set(fork["tau"]))[-2]  # 2/3
    assert (exact.xs(late, level="tau")["entropy_k_high"] == 0).all()
    # The agreement table holds both scores of MI and forking (the probes run on the network only).
    gaps = pd.read_parquet(res / "tables" / "agreement.parquet")
    assert gaps.groupby("measurement")["score"].agg(set).to_dict() == {
        "probes": {"network"},
        "mutual_info": {"network", "exact"},
        "forking": {"network", "exact"},
    }

    # Invariants: these hold for any model by construction, so they check the bookkeeping, not the science.
    # The exact-score runs use the network's settings (only the score differs).
    for name in ("mutual_info", "forking"):
        a, b = tables[name], tables[f"{name}_exact"]
        same = [c for c in a.columns if c not in ("mi", "se", "entropy", "ci_low", "ci_high", "checkpoint")]
        pd.testing.assert_frame_equal(a[same], b[same], obj=name)
        assert (b["checkpoint"] == "exact").all() and (a["checkpoint"] != "exact").all()
    for name in ("forking", "forking_exact"):  # forks started at the data end (tau = 1) are one image
        fork = tables[name]
        assert (fork.loc[fork["tau"] == 1.0, "entropy"] == 0).all(), name
    for name in ("mutual_info", "mutual_info_exact"):  # 0 at tau = 0; an integral of a square never falls
        mi = tables[name].sort_values(["factor", "tau"])
        assert (mi.loc[mi["tau"] == 0.0, "mi"] == 0).all(), name
        # (up to rounding: where the exact score's integrand is 0 the mean over images may move by 1 ulp)
        assert (mi.groupby("factor")["mi"].diff().dropna() >= -1e-12).all(), name

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
    for name in ("probes", *(f"{m}{s}" for m in ("mutual_info", "forking") for s in ("", "_exact"))):
        assert after[f"{name}.parquet"] == before[f"{name}.parquet"], f"{name} changed when recomputed"


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


def test_the_device_memory_budget_reruns_nothing(tiny_run):
    # batch sizes follow the budget, and no table depends on the batch size: an execution setting, not a param
    # (only the report, which prints the whole resolved config, is redone)
    (tiny_run / "budget.yaml").write_text("device_memory_gb: 0.5\n")
    proc = run_snakemake(tiny_run, "-n", *TINY, "budget.yaml", timeout=120)
    jobs = set(re.findall(r"^(?:local)?rule (\w+):", proc.stdout, flags=re.M))
    assert jobs == {"make_report", "all"}, proc.stdout[-3000:]


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
        assert "score=_exact" not in proc.stdout  # the exact score has no network to retrain
    assert "Params have changed since last execution" in proc.stdout
