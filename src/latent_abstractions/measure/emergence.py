"""When does each factor emerge? Crossing times of the three curves, their CIs, orders and agreement.

For a curve v(tau) of one factor (tau generative: 0 = noise, 1 = data), its range is [min v, max v]. For a
rising curve (probe accuracy, mutual information) the emergence time at level q is the first tau where
v >= min + q (max - min); for the falling fork entropy, the fall from its start: the first tau where
v <= v(tau_0) - q (v(tau_0) - min) (nan if it never falls below its first value).
Between grid points the crossing is interpolated linearly.

Confidence intervals: parametric bootstrap. Each point is redrawn from N(estimate, se) independently (se from
the table: MI's ``se``; for probes and forking (ci_high - ci_low) / (2 * 1.96)), the crossing recomputed, and
the 2.5/97.5% percentiles of the draws that cross taken (no CI where the estimate itself has no crossing).
Orders are by the first threshold's crossing time; agreement between two measurements is Spearman's (and
Kendall's) rank correlation of those times over the factors that cross in both.

A factor with a single level in the data (``n_levels`` < 2 in a measurement's table) is constant: nothing
about it can emerge, so it is marked ``measurable = False`` with no crossing time, rank or CI, and is left out
of orders and agreement.
"""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
from scipy.stats import kendalltau, spearmanr

from ..data.factors import FACTOR_NAMES

MEASUREMENTS = {  # name: (value column, rising?)
    "probes": ("accuracy", True),
    "mutual_info": ("mi", True),
    "forking": ("entropy", False),
    "exact_filter": ("mi", True),  # the exact filter's MI (its K -> infinity fork entropy crosses at the same tau)
}


def crossing_tau(taus: np.ndarray, values: np.ndarray, q: float, rising: bool) -> float:
    """First tau at which the curve covers fraction q of its range (falling: of its fall from the start).

    Linear interpolation between grid points; nan if the curve is flat (falling: never below its start).
    """
    v = np.asarray(values, dtype=np.float64)
    if rising:
        lo, hi = v.min(), v.max()
        if hi - lo <= 1e-12:
            return float("nan")
        frac = (v - lo) / (hi - lo)
    else:  # the fall from the start: a curve that never drops below its first value has no crossing
        drop = v[0] - v.min()
        if drop <= 1e-12:
            return float("nan")
        frac = (v[0] - v) / drop
    above = np.nonzero(frac >= q - 1e-12)[0]
    i = int(above[0])
    if i == 0:
        return float(taus[0])
    f0, f1 = frac[i - 1], frac[i]
    return float(taus[i - 1] + (q - f0) / (f1 - f0) * (taus[i] - taus[i - 1]))


def _se(df: pd.DataFrame, name: str) -> np.ndarray:
    if name == "mutual_info":
        return df["se"].to_numpy()
    if name == "exact_filter":
        return df["mi_se"].to_numpy()
    return ((df["ci_high"] - df["ci_low"]) / (2 * 1.96)).to_numpy()


def emergence_table(
    curves: dict[str, pd.DataFrame], thresholds: list[float], n_bootstrap: int, seed: int
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Crossing times with bootstrap CIs per measurement x factor x threshold, and pairwise rank agreement.

    Args:
        curves: measurement name -> its table (probes restricted to one network layer).
    """
    rng = np.random.default_rng(seed)
    rows = []
    for name, df in curves.items():
        col, rising = MEASUREMENTS[name]
        for factor in FACTOR_NAMES:
            d = df[df["factor"] == factor].sort_values("tau")
            if d.empty:
                continue
            if "n_levels" in d and (d["n_levels"] < 2).any():  # a constant factor: not measurable
                rows += [
                    {
                        "measurement": name,
                        "factor": factor,
                        "threshold": float(q),
                        "tau": np.nan,
                        "ci_low": np.nan,
                        "ci_high": np.nan,
                        "measurable": False,
                    }
                    for q in thresholds
                ]
                continue
            taus, v, se = d["tau"].to_numpy(), d[col].to_numpy(), _se(d, name)
            draws = v[None] + rng.standard_normal((n_bootstrap, len(v))) * se[None]
            for q in thresholds:
                boot = np.array([crossing_tau(taus, b, q, rising) for b in draws])
                boot = boot[np.isfinite(boot)]
                tau = crossing_tau(taus, v, q, rising)
                has_ci = len(boot) > 0 and np.isfinite(tau)  # no CI around a crossing the estimate lacks
                rows.append(
                    {
                        "measurement": name,
                        "factor": factor,
                        "threshold": float(q),
                        "tau": tau,
                        "ci_low": float(np.quantile(boot, 0.025)) if has_ci else np.nan,
                        "ci_high": float(np.quantile(boot, 0.975)) if has_ci else np.nan,
                        "measurable": True,
                    }
                )
    table = pd.DataFrame(rows)
    first = table[table["threshold"] == thresholds[0]]
    table["rank"] = np.nan
    for name in curves:
        sel = (table["measurement"] == name) & (table["threshold"] == thresholds[0])
        table.loc[sel, "rank"] = table.loc[sel, "tau"].rank(method="min")
    agree = []
    for a, b in itertools.combinations(curves, 2):
        ta = first[first["measurement"] == a].set_index("factor")["tau"]
        tb = first[first["measurement"] == b].set_index("factor")["tau"]
        common = ta.index.intersection(tb.index)
        ok = np.isfinite(ta[common]) & np.isfinite(tb[common])
        x, y = ta[common][ok], tb[common][ok]
        rho = spearmanr(x, y).statistic if len(x) > 2 else np.nan
        tau_k = kendalltau(x, y).statistic if len(x) > 2 else np.nan
        agree.append(
            {
                "measurement_a": a,
                "measurement_b": b,
                "threshold": float(thresholds[0]),
                "spearman": float(rho),
                "kendall": float(tau_k),
                "n_factors": int(len(x)),
            }
        )
    return table, pd.DataFrame(agree)


def factor_order(table: pd.DataFrame, measurement: str, threshold: float) -> list[str]:
    """Measurable factors from earliest to latest emergence (nan last)."""
    d = table[(table["measurement"] == measurement) & (table["threshold"] == threshold)]
    if "measurable" in d:
        d = d[d["measurable"]]
    return d.sort_values("tau", na_position="last")["factor"].tolist()
