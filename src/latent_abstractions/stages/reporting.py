"""Report stages (report environment: no torch): the figures, the emergence table, the HTML report."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import h5py
import pandas as pd

from ..io import write_parquet
from ..measure.agreement import agreement_table, exact_reference
from ..measure.emergence import MEASUREMENTS, emergence_table, factor_order
from ..report import plots
from ..report.html import write_report

log = logging.getLogger(__name__)


def plot_probes(probes: str, exact: str, pdf_out: str) -> None:
    """The ``plot_probes`` rule (the PNG beside ``pdf_out`` as well)."""
    plots.draw_probes(pd.read_parquet(probes), pdf_out, pd.read_parquet(exact))


def plot_mutual_info(mutual_info: str, exact: str, pdf_out: str) -> None:
    """The ``plot_mutual_info`` rule."""
    plots.draw_mutual_info(pd.read_parquet(mutual_info), pdf_out, pd.read_parquet(exact))


def plot_forking(forking: str, exact: str, pdf_out: str) -> None:
    """The ``plot_forking`` rule."""
    plots.draw_forking(pd.read_parquet(forking), pdf_out, pd.read_parquet(exact))


def read_scored(network: str, exact: str | None) -> pd.DataFrame:
    """A measurement's table on the network and, if given, on the exact score, stacked with a ``score`` column."""
    frames = [pd.read_parquet(network).assign(score="network")]
    if exact is not None:
        frames.append(pd.read_parquet(exact).assign(score="exact"))
    return pd.concat(frames, ignore_index=True)


def plot_agreement(
    mutual_info: str,
    forking: str,
    exact: str,
    exact_gaps: str,
    pdf_out: str,
    *,
    mutual_info_exact: str | None = None,
    forking_exact: str | None = None,
) -> None:
    """The ``plot_agreement`` rule: MI and forking per factor, on the network and (``*_exact``) on the exact score,
    against the exact filter and their criteria's ranges."""
    plots.draw_agreement(
        read_scored(mutual_info, mutual_info_exact),
        read_scored(forking, forking_exact),
        pd.read_parquet(exact),
        pd.read_parquet(exact_gaps),
        pdf_out,
    )


def plot_training_loss(losses: dict[str, str], pdf_out: str) -> None:
    """The ``plot_training_loss`` rule: ``losses`` maps each model name to its loss table."""
    plots.draw_training_loss({name: pd.read_parquet(path) for name, path in losses.items()}, pdf_out)


def plot_samples_forks(samples: str, strips: str, pdf_out: str) -> None:
    """The ``plot_samples_forks`` rule: unconditional samples next to the fork strips."""
    with h5py.File(samples) as s, h5py.File(strips) as f:
        plots.draw_samples_forks(s["images"][...], f["images"][...], f["taus"][...], pdf_out)


def make_emergence_table(
    probes: str,
    mutual_info: str,
    forking: str,
    exact: str,
    table_out: str,
    agreement_out: str,
    gaps_out: str,
    *,
    mutual_info_exact: str | None = None,
    forking_exact: str | None = None,
    layer: str,
    thresholds: list[float],
    n_bootstrap: int,
    seed: int,
) -> None:
    """The ``make_emergence_table`` rule: emergence times under the three measurements and the exact filter, the
    measurements' rank agreement (both from the network's curves), and each measured curve's gap to its exact
    reference (``gaps_out``): the network's, and MI's and forking's on the exact score (``*_exact``) beside them."""
    probe_table = pd.read_parquet(probes)
    curves = {
        "probes": probe_table[probe_table["layer"] == layer],
        "mutual_info": pd.read_parquet(mutual_info),
        "forking": pd.read_parquet(forking),
    }
    exact_table = pd.read_parquet(exact)
    scored = {
        "probes": curves["probes"],
        "mutual_info": read_scored(mutual_info, mutual_info_exact),
        "forking": read_scored(forking, forking_exact),
    }
    gaps = agreement_table(scored, exact_table, thresholds[0])
    curves["exact_filter"] = exact_reference(exact_table)
    table, agreement = emergence_table(curves, thresholds, n_bootstrap, seed)
    log.info("gaps to the exact filter:\n%s", gaps.drop(columns="reference").to_string())
    log.info("agreement:\n%s", agreement.to_string())
    meta = {"layer": layer, "thresholds": thresholds, "n_bootstrap": n_bootstrap}
    write_parquet(table, table_out, meta)
    write_parquet(agreement, agreement_out, meta)
    write_parquet(gaps, gaps_out, {**meta, "exact": "mixture all"})


def read_caption(path: str) -> str:
    """A caption file's text on one line."""
    return " ".join(Path(path).read_text().split())


def make_report(
    html_out: str,
    *,
    figures: dict[str, str],
    captions: dict[str, str],
    emergence: str,
    agreement: str,
    exact: str,
    exact_gaps: str,
    classifier_accuracy: str,
    sample_scores: dict[str, str],
    hparams: dict[str, str],
    benchmarks: list[str],
    config: dict,
    first_threshold: float,
) -> None:
    """The ``make_report`` rule: one self-contained HTML file from the declared inputs only.

    Args:
        figures, captions: figure key -> PNG path, caption (.rst) path.
        sample_scores, hparams: model name -> its sample-score table, its ``hparams.json``.
        benchmarks: the benchmark files of the run's rules; config: the resolved config (shown in the report).
    """
    em = pd.read_parquet(emergence)
    write_report(
        html_out,
        config=config,
        figures=figures,
        captions={key: read_caption(path) for key, path in captions.items()},
        emergence=em,
        agreement=pd.read_parquet(agreement),
        classifier_accuracy=pd.read_parquet(classifier_accuracy),
        sample_scores={m: pd.read_parquet(p) for m, p in sample_scores.items()},
        hparams={m: json.loads(Path(p).read_text()) for m, p in hparams.items()},
        benchmarks=benchmarks,
        orders={m: factor_order(em, m, first_threshold) for m in MEASUREMENTS},
        exact=pd.read_parquet(exact),
        exact_gaps=pd.read_parquet(exact_gaps),
    )
