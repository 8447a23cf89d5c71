"""One self-contained HTML report per run: figures embedded, settings, timings, the emergence table."""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path

import pandas as pd
import yaml

from ..io import atomic_path

STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;max-width:1100px;margin:2em auto;
padding:0 1em;color:#222;line-height:1.45}
h1{font-size:1.6em}h2{border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:1.6em}
table{border-collapse:collapse;font-size:.85em;margin:.6em 0}td,th{border:1px solid #ccc;padding:.25em .6em;
text-align:right}th{background:#f4f4f4}td:first-child,th:first-child{text-align:left}
img{max-width:100%;border:1px solid #eee;margin:.4em 0}pre{background:#f7f7f7;padding:.8em;overflow:auto;
font-size:.8em}.note{background:#eef6ff;padding:.6em 1em;border-left:4px solid #58a}
figcaption{font-size:.9em;color:#444}
"""


def _img(path: str | Path) -> str:
    data = base64.b64encode(Path(path).read_bytes()).decode()
    return f'<img src="data:image/png;base64,{data}" alt="{html.escape(Path(path).stem)}">'


def _table(df: pd.DataFrame, floatfmt: str = "{:.3f}") -> str:
    return df.to_html(index=False, border=0, float_format=lambda v: floatfmt.format(v), na_rep="–")


def benchmark_table(paths: list[str | Path]) -> pd.DataFrame:
    """Wall-clock seconds and peak memory of the rules whose benchmark files are ``paths``.

    Each path is ``<benchmarks>/<rule>/<job>.tsv`` (Snakemake's benchmark layout in this workflow).
    """
    rows = []
    for path in sorted(map(str, paths)):
        df = pd.read_csv(path, sep="\t")
        rows.append(
            {
                "rule": Path(path).parent.name,
                "job": Path(path).stem,
                "seconds": float(df["s"].iloc[0]),
                "max_rss_mb": float(df["max_rss"].iloc[0]) if "max_rss" in df else float("nan"),
            }
        )
    return pd.DataFrame(rows, columns=["rule", "job", "seconds", "max_rss_mb"])


#: Section heading per figure key, in report order (the long text comes from the figure's caption file).
SECTION_TITLES = {
    "probes": "Linear probes vs generative time τ",
    "mutual_info": "Mutual information vs generative time τ",
    "forking": "Forking entropy vs generative time τ",
    "agreement_figure": "Network, exact score and exact filter, factor by factor",
    "samples_forks": "Samples and fork strips",
    "training_loss": "Training loss",
}


EXACT_TEXT = (
    "<p>Shapes3D is a finite grid of images, so its data distribution is the uniform distribution over them, and "
    "the state at τ (an image plus Gaussian noise of std σ(1 − τ)) has a mixture of Gaussians as its law. Bayes' "
    "rule then gives the <b>exact filter</b>: the probability π<sub>τ</sub>(i | y) = softmax<sub>i</sub>"
    "(−‖y − x<sub>i</sub>‖² / 2σ²) that a state y ends at image i. Summed over the images of each level it gives "
    "p(factor | y), and from it, with no network at all: the exact mutual information I(Y<sub>τ</sub>; factor); "
    "the Bayes accuracy E max p(factor | y), which no probe on any features can beat; and the law of fork labels "
    "(a predictor-only reverse SDE with the exact score ends at image i with probability π<sub>τ</sub>(i | y)). "
    "Every measurement figure overlays these curves in black dashed. The learned MI integrates from τ = 0 and so "
    "measures I(Y<sub>τ</sub>) − I(Y<sub>0</sub>); it is compared with the exact curve in the same terms. Forking "
    "is compared with the exact expected entropy of as many forks as were run. The probes' gap is a bound (how much "
    "a linear probe on the network's features leaves below the Bayes accuracy), not an agreement.</p>"
    "<p>The MI estimator and forking also run on the <b>exact score</b> ∇log p<sub>τ</sub>(y) of the same mixture "
    "(score = exact) in place of the network (score = network), with the same images, seeds and settings. The "
    "exact-score curve carries the measurement's own error (Monte Carlo, sampler discretisation, classifier) and "
    "no model error: where it meets the exact filter and the network's curve does not, the gap is the "
    "network's.</p>"
)


def exact_section(exact: pd.DataFrame | None, gaps: pd.DataFrame | None, emergence: pd.DataFrame) -> list[str]:
    """HTML parts of the report's exact-filter section (empty when the run has no exact table)."""
    if exact is None or gaps is None:
        return []
    main = exact[exact["mixture"] == ("all" if "all" in set(exact["mixture"]) else exact["mixture"].iloc[0])]
    first = emergence[emergence["measurement"] == "exact_filter"].sort_values("threshold")
    head = (
        main.groupby("factor", sort=False)
        .agg(
            levels=("n_levels", "first"),
            **{"I(Y_0) [nats]": ("mi_at_noise", "first"), "ceiling [nats]": ("ceiling", "first")},
        )
        .reset_index()
    )
    for q, d in first.groupby("threshold"):
        head[f"τ at {int(q * 100)}% of exact MI"] = head["factor"].map(d.set_index("factor")["tau"])
    head = head.sort_values(head.columns[-1] if len(first) else "factor")
    parts = [
        "<h2>The exact filter: ground truth of the three measurements</h2>",
        EXACT_TEXT,
        f"<p>Computed from {int(main['n_samples'].iloc[0])} query states per τ on "
        f"{int(main['n_images'].iloc[0])} images. Factors in the order the exact filter commits them:</p>",
        _table(head),
    ]
    if set(exact["mixture"]) >= {"all", "train"}:
        a = exact[exact["mixture"] == "all"].set_index(["factor", "tau"])["mi"]
        b = exact[exact["mixture"] == "train"].set_index(["factor", "tau"])["mi"]
        parts.append(
            f"<p>Sensitivity: the training split alone (what the networks saw) changes the exact MI by at "
            f"most {float((a - b).abs().max()):.3f} nats.</p>"
        )
    g = gaps.assign(**{"measurement (vs)": gaps["measurement"] + " (" + gaps["kind"] + ")"})
    cols = [
        "measurement (vs)",
        "score",
        "factor",
        "max_abs_gap",
        "mean_abs_gap",
        "mean_gap",
        "first_tau_gap",
        "tau_learned",
        "tau_exact",
        "tau_gap",
        "taus_within",
        "agrees",
    ]
    g = g[[c for c in cols if c in g]]
    refs = "".join(
        f"<li><b>{html.escape(m)}</b> vs {html.escape(r)}</li>"
        for m, r in gaps.groupby("measurement", sort=False)["reference"].first().items()
    )
    parts += [
        "<h3>How far each measured curve is from the exact filter</h3>",
        f"<ul>{refs}</ul><p>Gaps are exact − measured over the shared τ grid; τ columns: first τ at "
        f"{int(gaps['threshold'].iloc[0] * 100) if len(gaps) else 50}% of each curve's range "
        "(forking: of its fall), and their difference (learned − exact).</p>",
        *criteria_summary(gaps, emergence),
        _table(g),
    ]
    return parts


#: How the report names each score (``agreement.SCORES``) in running text.
SCORE_NAMES = {"network": "the network", "exact": "the exact score"}


def criteria_summary(gaps: pd.DataFrame, emergence: pd.DataFrame) -> list[str]:
    """The agreement criteria and, per measurement and score, which measurable factors meet theirs at every τ ([] for
    old tables). Factors the emergence table marks not measurable agree trivially and are not counted."""
    if "agrees" not in gaps:
        return []
    skipped = not_measurable_factors(emergence)
    gaps = gaps if "score" in gaps else gaps.assign(score="network")
    items = []
    for (name, score), d in gaps[~gaps["factor"].isin(skipped)].groupby(["measurement", "score"], sort=False):
        passing = ", ".join(d.loc[d["agrees"].astype(bool), "factor"]) or "none"
        items.append(
            f"<li><b>{html.escape(name)}</b> on {html.escape(SCORE_NAMES.get(score, score))} "
            f"({html.escape(d['criterion'].iloc[0])}): "
            f"{int(d['agrees'].sum())} of {len(d)} factors at every τ ({html.escape(passing)})</li>"
        )
    note = f" Not measurable, so not counted: {', '.join(skipped)}." if skipped else ""
    return [
        "<p>Agreement criteria, checked at each τ of the grid (taus_within: how many τ pass; agrees: all of "
        f"them).{html.escape(note)}</p><ul>{''.join(items)}</ul>"
    ]


def not_measurable_factors(emergence: pd.DataFrame) -> list[str]:
    """The factors the emergence table marks not measurable (constant in the data), sorted."""
    if "measurable" not in emergence:
        return []
    return sorted(set(emergence.loc[~emergence["measurable"].astype(bool), "factor"]))


def not_measurable_note(emergence: pd.DataFrame) -> str:
    """A sentence naming the factors constant in the data (excluded from orders and agreement), or ''."""
    names = not_measurable_factors(emergence)
    if not names:
        return ""
    return (
        f'<p class="note"><b>Not measurable:</b> {html.escape(", ".join(names))} — a single level in the '
        "data (constant), so no emergence time; left out of the orders and the agreement statistics.</p>"
    )


def write_report(
    out: str | Path,
    *,
    config: dict,
    figures: dict[str, str],
    captions: dict[str, str],
    emergence: pd.DataFrame,
    agreement: pd.DataFrame,
    classifier_accuracy: pd.DataFrame,
    sample_scores: dict[str, pd.DataFrame],
    hparams: dict[str, dict],
    benchmarks: list[str],
    orders: dict[str, list[str]],
    exact: pd.DataFrame | None = None,
    exact_gaps: pd.DataFrame | None = None,
) -> None:
    """Write the HTML report atomically (see the module docstring)."""
    run = config["run_name"]
    ds = config["dataset"]
    models = pd.DataFrame(
        [
            {
                "model": name,
                "parameters": hp.get("n_params"),
                "training steps": hp.get("settings", {}).get("steps"),
                "batch size": hp.get("settings", {}).get("batch_size"),
                "resolution": hp.get("resolution"),
                "sigma_min": hp.get("sigma_min"),
                "sigma_max": hp.get("sigma_max"),
                "train images": hp.get("n_train"),
            }
            for name, hp in hparams.items()
        ]
    )
    scores = pd.concat([df.assign(model=m) for m, df in sample_scores.items()])[
        ["model", "factor", "tv_distance", "n_samples"]
    ]
    bench = benchmark_table(benchmarks)
    em = emergence.pivot_table(index=["factor"], columns=["measurement", "threshold"], values="tau").round(3)
    em.columns = [f"{m} τ@{int(q * 100)}%" for m, q in em.columns]
    em_ci = emergence.assign(
        ci=emergence.apply(lambda r: f"{r['tau']:.2f} [{r['ci_low']:.2f}, {r['ci_high']:.2f}]", axis=1)
    )
    em_ci = em_ci.pivot(index="factor", columns=["measurement", "threshold"], values="ci")
    em_ci.columns = [f"{m} @{int(q * 100)}%" for m, q in em_ci.columns]
    parts = [
        f"<h1>Latent abstractions in generative diffusion models — run <code>{html.escape(run)}</code></h1>",
        '<p class="note"><b>Time convention.</b> τ is generative time in [0, 1]: τ = 0 is pure noise (the VE '
        "prior), τ = 1 is data. A state at τ carries noise of std σ(1 − τ), with σ(t) = σ<sub>min</sub>"
        "(σ<sub>max</sub>/σ<sub>min</sub>)<sup>t</sup>.</p>",
        "<p>Three measurements of when each Shapes3D factor is committed along the generative path: "
        "<b>linear probes</b> on the unconditional score network's features of images noised to τ; the "
        "<b>mutual information</b> I(Y<sub>τ</sub>; factor), the integral from τ = 0 to τ of "
        "½ g² E‖s(y, t | factor) − s(y, t)‖² from a conditional network; and <b>forking</b>: generate to τ, "
        "fork into independent continuations, and measure the entropy of the forks' labels.</p>",
        f"<h2>Data and models</h2><p>Dataset source: <b>{html.escape(ds['source'])}</b>"
        + (
            f" ({ds['synthetic']['resolution']}×{ds['synthetic']['resolution']}, levels {ds['synthetic']['levels']})"
            if ds["source"] == "synthetic"
            else ""
        )
        + "</p>",
        _table(models, "{:.4g}"),
        "<h3>Attribute classifier (held-out accuracy)</h3>",
        _table(classifier_accuracy),
        "<h3>Sample quality</h3><p>tv_distance: classified labels of the samples vs the uniform factor grid; "
        "confidence: the classifier's mean top-class probability on the samples, confidence_real: on as many "
        "real held-out images; nn_distance: median RMS pixel distance (0-1 scale) from a sample to its nearest "
        "training image, nn_distance_real: the same for held-out images (the distance of a real but new "
        "scene).</p>",
        _table(scores),
    ]
    for key, title in SECTION_TITLES.items():
        if key in figures:
            parts.append(
                f"<h2>{html.escape(title)}</h2><figure>{_img(figures[key])}"
                f"<figcaption>{html.escape(captions.get(key, ''))}</figcaption></figure>"
            )
    parts += [
        "<h2>Emergence table</h2><p>τ at which each curve first covers 50% / 90% of its range "
        "(forking: of its fall), with parametric-bootstrap 95% CIs.</p>",
        em_ci.reset_index().to_html(index=False, border=0),
        not_measurable_note(emergence),
        "<h3>Order of factors (earliest first)</h3><ul>"
        + "".join(f"<li><b>{m}</b>: {' → '.join(o)}</li>" for m, o in orders.items())
        + "</ul>",
        "<h3>Agreement between measurements (rank correlation of the 50% times)</h3>",
        _table(agreement),
        *exact_section(exact, exact_gaps, emergence),
        "<h2>Per-rule times (from the benchmark files)</h2>",
        _table(bench, "{:.1f}"),
        "<h2>Resolved configuration</h2><pre>" + html.escape(yaml.safe_dump(config, sort_keys=False)) + "</pre>",
        "<h2>Model hyperparameters</h2><pre>" + html.escape(json.dumps(hparams, indent=1, default=str)) + "</pre>",
    ]
    doc = (
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>Latent abstractions — {html.escape(run)}"
        f"</title><style>{STYLE}</style></head><body>{''.join(parts)}</body></html>"
    )
    with atomic_path(out) as tmp:
        tmp.write_text(doc, encoding="utf-8")
