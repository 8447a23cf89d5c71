"""Gaps between learned curves and the exact filter (known answers on hand-made curves), the exact_filter
stage on a small rendered file, and the figures' exact overlays."""

import json
import math
import re

import numpy as np
import pandas as pd
import pytest
import torch

from latent_abstractions.data.factors import FACTOR_NAMES
from latent_abstractions.data.render import GridSpec
from latent_abstractions.data.shapes3d import make_split, write_synthetic
from latent_abstractions.measure.agreement import agreement_table

TAUS = np.array([0.0, 0.25, 0.5, 0.75, 1.0])


def exact_table():
    rows = []
    for f in FACTOR_NAMES:
        half = 0.2 if f == "orientation" else 0.05  # the K-fork reference's 95% range: +- half, [0, 0] at 0
        for t in TAUS:
            ek = 0.8 * (1 - t)
            rows.append(
                {
                    "mixture": "all",
                    "tau": t,
                    "factor": f,
                    "mi": 0.1 + 0.5 * t,
                    "mi_at_noise": 0.1,
                    "mi_se": 0.01,
                    "bayes_accuracy": 0.5 + 0.5 * t,
                    "entropy_k": ek,
                    "entropy_k_low": max(ek - half, 0.0),
                    "entropy_k_high": ek + half if ek > 0 else 0.0,
                    "entropy": 1 - t,
                }
            )
    # a second mixture that must be ignored
    return pd.concat([pd.DataFrame(rows), pd.DataFrame(rows).assign(mixture="train", mi=9.0)])


def test_gaps_and_emergence_shift_known_answers():
    learned_probes = pd.DataFrame(
        [{"tau": t, "factor": f, "accuracy": 0.5 + 0.5 * max(t - 0.25, 0.0)} for f in FACTOR_NAMES for t in TAUS]
    ).eval("ci_low = accuracy")
    # the learned MI is the exact I(Y_tau) - I(Y_0) minus 0.05 (a shift: same emergence time)
    learned_mi = pd.DataFrame(
        [{"tau": t, "factor": f, "mi": 0.5 * t - 0.05, "se": 0.01, "n_levels": 4} for f in FACTOR_NAMES for t in TAUS]
    )
    learned_fork = pd.DataFrame(
        [
            {"tau": t, "factor": f, "entropy": 0.8 * (1 - t) + (0.2 if t == 0.5 else 0.0)}
            for f in FACTOR_NAMES
            for t in TAUS
        ]
    )
    learned_fork = learned_fork.assign(ci_low=learned_fork["entropy"], ci_high=learned_fork["entropy"])
    g = agreement_table(
        {"probes": learned_probes, "mutual_info": learned_mi, "forking": learned_fork}, exact_table(), 0.5
    ).set_index(["measurement", "factor"])
    p = g.loc[("probes", "shape")]
    assert p["kind"] == "bound"
    # exact - learned on the grid: 0, .125, .125, .125, .125
    assert p["max_abs_gap"] == pytest.approx(0.125) and p["mean_abs_gap"] == pytest.approx(0.1)
    # exact crosses 0.75 at tau = .5; learned spans .5 .. .875, crosses .6875 at .5 + (.0625 / .125) * .25
    assert p["tau_exact"] == pytest.approx(0.5) and p["tau_gap"] == pytest.approx(0.125)
    m = g.loc[("mutual_info", "scale")]
    assert m["kind"] == "agreement"
    assert m["max_abs_gap"] == pytest.approx(0.05) and m["mean_gap"] == pytest.approx(0.05)
    assert m["tau_gap"] == pytest.approx(0.0, abs=1e-12)
    f = g.loc[("forking", "orientation")]
    # only tau = .5 differs, by .2; exact falls .8 -> 0 (50% at .5); learned .8, .6, .6, .2, 0: 50% at .625
    assert f["max_abs_gap"] == pytest.approx(0.2) and f["mean_abs_gap"] == pytest.approx(0.04)
    assert f["tau_exact"] == pytest.approx(0.5) and f["tau_gap"] == pytest.approx(0.125)
    assert f["first_tau_gap"] == pytest.approx(0.0) and m["first_tau_gap"] == pytest.approx(0.05)


def test_agreement_criteria_known_answers():
    """Each measurement's per-tau criterion on curves built to pass or fail it at known taus."""
    probes, mi, fork = [], [], []
    for f in FACTOR_NAMES:
        for t in TAUS:
            acc = 0.5 + 0.5 * t - 0.1  # 0.1 below the Bayes accuracy...
            if f == "shape" and t == 0.25:
                acc += 0.15  # ...but 0.05 above it here, CI half-width 0.02
            probes.append({"tau": t, "factor": f, "accuracy": acc, "ci_low": acc - 0.02, "ci_high": acc + 0.02})
            levels = {"scale": 1}.get(f, 4)  # one level: ceiling log 1 = 0
            shift = {"wall_hue": 0.14, "object_hue": 0.16}.get(f, 0.0) if t == 0.75 else 0.0
            mi.append({"tau": t, "factor": f, "mi": 0.5 * t + shift, "se": 0.01, "n_levels": levels})
            ent = 0.8 * (1 - t)
            if f == "floor_hue" and t == 0.5:
                ent += 0.1  # 0.5 outside the reference's range [0.35, 0.45]
            if f == "orientation" and t == 0.0:
                ent -= 0.15  # inside its wide range [0.6, 1.0], but 0.15 off at tau = 0
            if f == "wall_hue" and t == 1.0:
                ent += 0.03  # where every exact fork agrees the range is [0, 0]
            fork.append({"tau": t, "factor": f, "entropy": ent, "ci_low": ent - 0.3, "ci_high": ent + 0.3})
    g = agreement_table(
        {"probes": pd.DataFrame(probes), "mutual_info": pd.DataFrame(mi), "forking": pd.DataFrame(fork)},
        exact_table(),
        0.5,
    ).set_index(["measurement", "factor"])
    assert set(g["score"]) == {"network"}  # tables without a score column are the network's
    n = len(TAUS)
    expected = {
        ("probes", "shape"): n - 1,
        ("probes", "floor_hue"): n,
        ("mutual_info", "floor_hue"): n,
        ("mutual_info", "wall_hue"): n,  # 0.14 <= max(0.15, 0.1 log 4)
        ("mutual_info", "object_hue"): n - 1,  # 0.16 > 0.15
        ("mutual_info", "scale"): 1,  # above log 1 + 2 SE wherever the exact gain is > 0.02
        ("forking", "floor_hue"): n - 1,
        ("forking", "orientation"): n - 1,
        ("forking", "shape"): n,
        ("forking", "wall_hue"): n - 1,
    }  # the learned CIs (+- 0.3, covering the exact) do not enter
    for key, count in expected.items():
        assert g.loc[key, "taus_within"] == count, key
        assert g.loc[key, "agrees"] == (count == n), key
    assert set(g["criterion"]) >= {"CI low <= Bayes accuracy"}


def test_each_score_gets_its_own_rows_against_the_same_reference():
    """The network's and the exact score's curves of one measurement: one row each per factor, gaps to one reference."""
    exact = exact_table()
    ref = exact[exact["mixture"] == "all"]
    on_exact = ref.assign(mi=ref["mi"] - ref["mi_at_noise"], se=0.01, n_levels=4)
    on_exact = on_exact[["tau", "factor", "mi", "se", "n_levels"]]
    on_network = on_exact.assign(mi=on_exact["mi"] - 0.3)  # 0.3 nats short at every tau: over the 0.15 tolerance
    probes = ref.assign(accuracy=ref["bayes_accuracy"], ci_low=ref["bayes_accuracy"])
    probes = probes[["tau", "factor", "accuracy", "ci_low"]]
    both = pd.concat([on_network.assign(score="network"), on_exact.assign(score="exact")])
    g = agreement_table({"probes": probes, "mutual_info": both}, exact)
    assert list(g[["measurement", "score"]].drop_duplicates().itertuples(index=False, name=None)) == [
        ("probes", "network"),
        ("mutual_info", "network"),
        ("mutual_info", "exact"),
    ]
    assert list(g.columns[:3]) == ["measurement", "score", "factor"] and len(g) == 3 * len(FACTOR_NAMES)
    m = g[g["measurement"] == "mutual_info"].set_index(["score", "factor"])
    assert (m.loc["exact", "max_abs_gap"] == 0).all() and m.loc["exact", "agrees"].all()
    assert np.allclose(m.loc["network", "max_abs_gap"], 0.3) and not m.loc["network", "agrees"].any()
    assert (m.loc["network", "taus_within"] == 0).all() and (m.loc["exact", "taus_within"] == len(TAUS)).all()
    with pytest.raises(ValueError, match=r"score\(s\) \['ema'\]; expected values of \('network', 'exact'\)"):
        agreement_table({"mutual_info": on_exact.assign(score="ema")}, exact)


def test_agreement_criterion_names_a_missing_column():
    learned_mi = pd.DataFrame([{"tau": t, "factor": f, "mi": 0.5 * t} for f in FACTOR_NAMES for t in TAUS])
    with pytest.raises(KeyError, match=r"mutual_info table lacks column\(s\) \['se', 'n_levels'\]"):
        agreement_table({"mutual_info": learned_mi}, exact_table())
    fork = pd.DataFrame([{"tau": t, "factor": f, "entropy": 0.5} for f in FACTOR_NAMES for t in TAUS])
    with pytest.raises(
        KeyError,
        match=r"exact_filter table lacks column\(s\) \['entropy_k_low'\] needed for the "
        r"forking agreement criterion",
    ):
        agreement_table({"forking": fork}, exact_table().drop(columns="entropy_k_low"))


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    d = tmp_path_factory.mktemp("exact_stage")
    write_synthetic(d / "s.h5", GridSpec.from_counts(8, (2, 2, 2, 2, 2, 1)), progress=False)
    make_split(32, 0.25, 0).to_parquet(d / "split.parquet")
    (d / "hparams.json").write_text(json.dumps({"sigma_min": 0.01, "sigma_max": 4.0}))
    from latent_abstractions.stages.exact import compute_exact_filter

    df = compute_exact_filter(
        str(d / "s.h5"),
        str(d / "split.parquet"),
        str(d / "hparams.json"),
        str(d / "exact.parquet"),
        taus=[0.0, 0.5, 1.0],
        n_samples=256,
        n_forks=4,
        n_base=5,
        mixtures=["all", "train"],
        chunk_size=7,
        seed=0,
        device=torch.device("cpu"),
    )
    return d, df


def test_stage_writes_the_table_with_known_ends(small_run):
    d, df = small_run
    assert (d / "exact.parquet").exists()
    cols = {
        "tau",
        "factor",
        "mi",
        "mi_se",
        "mi_at_noise",
        "entropy",
        "entropy_k",
        "bayes_accuracy",
        "ceiling",
        "mixture",
        "n_samples",
    }
    assert cols <= set(df.columns)
    full = df[(df["mixture"] == "all")].set_index(["factor", "tau"])
    for f in FACTOR_NAMES[:5]:  # two levels each: at tau = 1 everything is known
        assert full.loc[(f, 1.0), "mi"] == pytest.approx(math.log(2), abs=1e-9)
        assert full.loc[(f, 1.0), "bayes_accuracy"] == pytest.approx(1.0, abs=1e-9)
        assert full.loc[(f, 1.0), "entropy"] == pytest.approx(0.0, abs=1e-9)
        assert full.loc[(f, 0.0), "mi"] == pytest.approx(full.loc[(f, 0.0), "mi_at_noise"])  # tau 0 is sigma_max
    # orientation has one level: nothing to learn about it
    assert full.loc[("orientation", 0.5), "mi"] == pytest.approx(0.0, abs=1e-12)
    # the training split (24 of 32 images) has unbalanced levels: its ceiling is the split's level entropy
    train = df[df["mixture"] == "train"]
    assert (train["ceiling"] <= math.log(2) + 1e-12).all() and (train["ceiling"] < math.log(2) - 1e-6).any()


def test_figures_overlay_the_exact_curves(small_run, tmp_path):
    from latent_abstractions.report import plots as plotting

    _, exact = small_run
    taus = sorted(exact["tau"].unique())
    mi = pd.DataFrame(
        [{"tau": t, "factor": f, "mi": 0.3 * t, "se": 0.01, "ceiling": math.log(2)} for f in FACTOR_NAMES for t in taus]
    )
    captured = {}
    real_save = plotting.save

    def keep(fig, path):
        captured["labels"] = [h.get_label() for h in fig.axes[0].get_legend().legend_handles]
        captured["lines"] = [ln for ln in fig.axes[0].lines if ln.get_color() == "black"]
        real_save(fig, path)

    plotting.save = keep
    try:
        plotting.draw_mutual_info(mi, tmp_path / "mi.pdf", exact)
    finally:
        plotting.save = real_save
    assert any("exact filter" in lab for lab in captured["labels"])
    assert len(captured["lines"]) == 6  # one exact curve per factor, all in the one style
    # drawn in the estimator's terms: exact MI minus I(Y_0)
    d = exact[(exact["mixture"] == "all") & (exact["factor"] == "floor_hue")].sort_values("tau")
    np.testing.assert_allclose(captured["lines"][0].get_ydata(), d["mi"] - d["mi_at_noise"])
    assert (tmp_path / "mi.png").exists()


def test_agreement_figure_draws_each_criterions_range(small_run, tmp_path):
    from latent_abstractions.report import plots as plotting

    _, exact = small_run
    taus = sorted(exact["tau"].unique())
    mi = pd.DataFrame(
        [
            {"tau": t, "factor": f, "mi": 0.3 * t, "se": 0.01, "ceiling": math.log(2), "n_levels": 2}
            for f in FACTOR_NAMES
            for t in taus
        ]
    )
    fork = pd.DataFrame(
        [
            {"tau": t, "factor": f, "entropy": 0.5 * (1 - t), "ci_low": 0.4 * (1 - t), "ci_high": 0.6 * (1 - t)}
            for f in FACTOR_NAMES
            for t in taus
        ]
    )
    # the same measurements on the exact score: the exact filter's own curves (a control that agrees everywhere)
    ref = exact[exact["mixture"] == "all"]
    mi_exact = ref.assign(mi=ref["mi"] - ref["mi_at_noise"], se=0.01, ceiling=math.log(2))
    fork_exact = ref.assign(entropy=ref["entropy_k"], ci_low=ref["entropy_k"], ci_high=ref["entropy_k"])
    mi_both = pd.concat([mi.assign(score="network"), mi_exact[mi.columns].assign(score="exact")])
    fork_both = pd.concat([fork.assign(score="network"), fork_exact[fork.columns].assign(score="exact")])
    gaps = agreement_table({"mutual_info": mi_both, "forking": fork_both}, exact)
    captured = {}
    real_save = plotting.save

    def keep(fig, path):
        captured["axes"] = fig.axes
        real_save(fig, path)

    plotting.save = keep
    try:
        plotting.draw_agreement(mi_both, fork_both, exact, gaps, tmp_path / "agreement.pdf")
    finally:
        plotting.save = real_save
    axes = captured["axes"]
    assert len(axes) == 2 * len(FACTOR_NAMES) and (tmp_path / "agreement.png").exists()
    e = exact[(exact["mixture"] == "all") & (exact["factor"] == "shape")].sort_values("tau")
    top, bottom = axes[FACTOR_NAMES.index("shape")], axes[len(FACTOR_NAMES) + FACTOR_NAMES.index("shape")]
    # the grey band is the first collection: MI +- max(0.15, 0.1 log 2) = 0.15; forking the simulated 95% range
    top_band = top.collections[0].get_paths()[0].vertices[:, 1]
    gain = (e["mi"] - e["mi_at_noise"]).to_numpy()
    assert top_band.max() == pytest.approx(gain.max() + 0.15) and top_band.min() == pytest.approx(gain.min() - 0.15)
    low_high = bottom.collections[0].get_paths()[0].vertices[:, 1]
    assert low_high.max() == pytest.approx(e["entropy_k_high"].max())
    assert low_high.min() == pytest.approx(e["entropy_k_low"].min())
    rows = gaps.set_index(["measurement", "score", "factor"])
    net, ex = rows.loc[("forking", "network", "shape")], rows.loc[("forking", "exact", "shape")]
    assert ex["taus_within"] == ex["n_taus"]  # the exact filter's own curve meets every criterion
    assert f"net {net['taus_within']}/{net['n_taus']}, exact {ex['n_taus']}/{ex['n_taus']}" in bottom.get_title()
    # both scores are drawn: the network's curve and the exact score's (on the exact reference, so hidden under it)
    ys = [line.get_ydata() for line in top.lines if line.get_linestyle() == "-."]
    assert len(ys) == 1 and np.allclose(ys[0], gain)


def test_report_counts_agreeing_factors_and_leaves_out_unmeasurable_ones():
    from latent_abstractions.report.html import criteria_summary

    gaps = pd.DataFrame(
        [
            {"measurement": "forking", "factor": "floor_hue", "criterion": "c", "agrees": True},
            {"measurement": "forking", "factor": "wall_hue", "criterion": "c", "agrees": False},
            {"measurement": "forking", "factor": "orientation", "criterion": "c", "agrees": True},
            {"measurement": "mutual_info", "factor": "floor_hue", "criterion": "d", "agrees": False},
        ]
    )
    emergence = pd.DataFrame({"factor": ["floor_hue", "wall_hue", "orientation"], "measurable": [True, True, False]})
    text = "".join(criteria_summary(gaps, emergence))
    assert "<b>forking</b> on the network (c): 1 of 2 factors at every τ (floor_hue)" in text
    assert "<b>mutual_info</b> on the network (d): 0 of 1 factors at every τ (none)" in text
    exact_rows = gaps.assign(score="exact", agrees=True)
    text = "".join(criteria_summary(pd.concat([gaps.assign(score="network"), exact_rows]), emergence))
    assert "<b>forking</b> on the exact score (c): 2 of 2 factors at every τ (floor_hue, wall_hue)" in text
    assert "<b>forking</b> on the network (c): 1 of 2" in text
    assert "not counted: orientation" in text
    assert "2 of 3" in "".join(criteria_summary(gaps, emergence.drop(columns=["measurable"])))
    assert criteria_summary(gaps.drop(columns=["agrees"]), emergence) == []


def test_report_shows_the_network_and_the_exact_score_rows_side_by_side(small_run):
    from latent_abstractions.report.html import exact_section

    _, exact = small_run
    ref = exact[exact["mixture"] == "all"]
    mi = ref.assign(mi=ref["mi"] - ref["mi_at_noise"], se=0.01)[["tau", "factor", "mi", "se", "n_levels"]]
    both = pd.concat([mi.assign(mi=mi["mi"] + 0.4, score="network"), mi.assign(score="exact")])
    gaps = agreement_table({"mutual_info": both}, exact)
    emergence = pd.DataFrame(columns=["measurement", "factor", "threshold", "tau"])
    text = "".join(exact_section(exact, gaps, emergence))
    table = text[text.index("<table", text.index("How far each measured curve")) :]
    assert re.findall(r"<th>([^<]*)</th>", table)[:3] == ["measurement (vs)", "score", "factor"]
    assert re.findall(r"<td>(network|exact)</td>", table) == ["network"] * 6 + ["exact"] * 6
    assert "<b>mutual_info</b> on the exact score" in text and "<b>mutual_info</b> on the network" in text
    assert "the gap is the network's" in text  # the report says what the exact-score rows are for
