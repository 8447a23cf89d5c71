"""How far is each learned curve from the exact filter's? Gaps over tau and in the emergence time.

Each measurement is compared with the exact curve that measures the same thing (tau generative: 0 = noise,
1 = data; the exact table's ``all`` mixture, the data distribution):

- probes: test accuracy against the Bayes accuracy E max_l p(factor = l | y). This is a *bound*, not an
  agreement: no probe on any features of Y_tau can beat it, so gap = Bayes accuracy - accuracy is what a
  linear probe on these features leaves on the table (negative only by sampling noise).
- mutual_info: the learned estimate integrates the score gap from tau = 0, so it estimates
  I(Y_tau; factor) - I(Y_0; factor); it is compared with the exact MI minus the exact I(Y_0) (like with like).
- forking: the entropy of K classified forks against the exact expected plug-in entropy of K labels drawn from
  p(factor | y), K the configured number of forks (the K -> infinity entropy is biased upwards against it).

The MI estimator and forking also run on the exact score of the data distribution (``SCORES``: the trained
network, and the exact score): the same measurement with no model error, so its gap to the exact filter is the
measurement's own (Monte Carlo, discretisation, classifier), and what the network's row adds to it is the
network's.

Per measurement x score x factor: the largest and the mean absolute gap over the taus both tables share, the gap
between the taus at which the two curves first cover ``threshold`` of their range (``emergence.crossing_tau``),
and whether the learned curve meets its agreement criterion (``CRITERIA``) at every shared tau:

- probes: the accuracy's CI does not lie above the Bayes accuracy (ci_low <= Bayes accuracy);
- mutual_info: |learned - exact| <= max(0.15 nats, 10% of log(levels)), and the estimate is not above its
  ceiling log(levels) by more than 2 standard errors;
- forking: the learned curve lies inside the exact reference's 95% range (``entropy_k_low`` ..
  ``entropy_k_high``: where the same measurement, n_base paths of K forks, lands on the exact law 95% of the time;
  exact_filter.plugin_entropy_band), and at the first tau (noise) the two differ by at most 0.1.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..data.factors import FACTOR_NAMES
from .emergence import MEASUREMENTS, crossing_tau

#: The scores a measurement runs on: the trained network, and the exact score of the data distribution
#: (exact_filter.exact_score_fn), the control that separates the measurement's error from the network's.
SCORES = ("network", "exact")

#: measurement -> (exact column, kind, what the learned curve is compared with)
REFERENCES = {
    "probes": ("bayes_accuracy", "bound", "Bayes accuracy E max p(factor | y) (an upper bound)"),
    "mutual_info": ("mi_gain", "agreement", "exact I(Y_tau; factor) - I(Y_0; factor)"),
    "forking": ("entropy_k", "agreement", "exact expected entropy of K forks' labels"),
}

#: measurement -> the per-tau criterion the ``agrees`` column checks (text written into the table)
CRITERIA = {
    "probes": "CI low <= Bayes accuracy",
    "mutual_info": "|gap| <= max(0.15, 0.1 log L) and estimate <= log L + 2 SE",
    "forking": "inside the exact reference's 95% range for the same bases and forks, and |gap| <= 0.1 at the first tau",
}
#: measurement -> further exact columns its criterion reads
CRITERION_EXACT_COLUMNS = {"forking": ["entropy_k_low", "entropy_k_high"]}
MI_TOLERANCE = (0.15, 0.1)  # nats, fraction of log(levels)
FORK_FIRST_TAU_TOLERANCE = 0.1  # normalised entropy


def _need(df: pd.DataFrame, name: str, cols: list[str], what: str = "its agreement criterion") -> None:
    missing = [c for c in cols if c not in df]
    if missing:
        raise KeyError(f"the {name} table lacks column(s) {missing} needed for {what}")


def mi_tolerance(n_levels) -> np.ndarray:
    """The MI criterion's tolerance max(0.15 nats, 10% of log(levels)) (``MI_TOLERANCE``), per ``n_levels`` entry."""
    log_l = np.log(np.maximum(np.asarray(n_levels, dtype=float), 1.0))
    return np.maximum(MI_TOLERANCE[0], MI_TOLERANCE[1] * log_l)


def within(name: str, m: pd.DataFrame, exact: np.ndarray, gap: np.ndarray) -> np.ndarray:
    """Per-tau booleans: does the learned curve meet ``CRITERIA[name]``?

    ``m`` holds the learned table's rows (sorted by tau) with the exact columns of ``CRITERION_EXACT_COLUMNS``,
    ``exact`` the reference at the same taus and ``gap`` exact - learned.
    """
    if name == "probes":
        _need(m, name, ["ci_low"])
        return m["ci_low"].to_numpy() <= exact + 1e-9
    if name == "mutual_info":
        _need(m, name, ["se", "n_levels"])
        log_l = np.log(np.maximum(m["n_levels"].to_numpy(dtype=float), 1.0))
        return (np.abs(gap) <= mi_tolerance(m["n_levels"]) + 1e-9) & (
            m["mi"].to_numpy() <= log_l + 2 * m["se"].to_numpy() + 1e-9
        )
    if name == "forking":
        _need(m, name, ["entropy"] + CRITERION_EXACT_COLUMNS[name])
        learned = m["entropy"].to_numpy()
        ok = (m["entropy_k_low"].to_numpy() <= learned + 1e-9) & (learned <= m["entropy_k_high"].to_numpy() + 1e-9)
        ok[0] &= abs(gap[0]) <= FORK_FIRST_TAU_TOLERANCE + 1e-9
        return ok
    raise ValueError(f"no agreement criterion for measurement {name!r}")


def exact_reference(exact: pd.DataFrame) -> pd.DataFrame:
    """The exact table's main rows (mixture ``all``, else the only one computed), with the MI in the learned
    estimator's terms (``mi_gain`` = exact MI - I(Y_0))."""
    if "mixture" in exact and exact["mixture"].nunique() > 0:
        mixtures = list(exact["mixture"].unique())
        exact = exact[exact["mixture"] == ("all" if "all" in mixtures else mixtures[0])]
    return exact.assign(mi_gain=exact["mi"] - exact["mi_at_noise"])


def agreement_table(curves: dict[str, pd.DataFrame], exact: pd.DataFrame, threshold: float = 0.5) -> pd.DataFrame:
    """Gaps between each measured curve and its exact reference, one row per measurement x score x factor.

    Args:
        curves: measurement name (probes / mutual_info / forking) -> its table (probes restricted to one layer).
            A table with a ``score`` column (``SCORES``) holds one curve per score; without one it is the network's.
        exact: the ``exact_filter`` table.
        threshold: the fraction of the range for the emergence times.

    Returns:
        columns measurement, score, factor, kind ("bound" / "agreement"), reference, n_taus, max_abs_gap,
        mean_abs_gap, mean_gap (exact - measured), first_tau_gap (the gap at the first shared tau), tau_learned,
        tau_exact, tau_gap (learned - exact), threshold, criterion (``CRITERIA``), taus_within (how many taus meet
        it) and agrees (all of them do). Rows by measurement, then score in ``SCORES`` order, then factor.
    """
    ref = exact_reference(exact)
    rows = []
    for name, table in curves.items():
        col, rising = MEASUREMENTS[name]
        ref_col, kind, text = REFERENCES[name]
        extra = CRITERION_EXACT_COLUMNS.get(name, [])
        _need(ref, "exact_filter", extra, f"the {name} agreement criterion")
        if "score" not in table:
            table = table.assign(score=SCORES[0])
        unknown = set(table["score"]) - set(SCORES)
        if unknown:
            raise ValueError(f"the {name} table has score(s) {sorted(unknown)}; expected values of {SCORES}")
        for score in [s for s in SCORES if s in set(table["score"])]:
            df = table[table["score"] == score]
            for factor in FACTOR_NAMES:
                a = df[df["factor"] == factor].assign(key=lambda d: d["tau"].round(8))
                b = ref[ref["factor"] == factor][["tau", ref_col, *extra]].assign(key=lambda d: d["tau"].round(8))
                m = a.merge(b.drop(columns="tau"), on="key").sort_values("tau")
                if m.empty:
                    continue
                exact_curve = m[ref_col].to_numpy()
                gap = exact_curve - m[col].to_numpy()
                ok = within(name, m, exact_curve, gap)
                taus = m["tau"].to_numpy()
                t_learned = crossing_tau(taus, m[col].to_numpy(), threshold, rising)
                t_exact = crossing_tau(taus, exact_curve, threshold, rising)
                rows.append(
                    {
                        "measurement": name,
                        "score": score,
                        "factor": factor,
                        "kind": kind,
                        "reference": text,
                        "n_taus": len(m),
                        "max_abs_gap": float(np.abs(gap).max()),
                        "mean_abs_gap": float(np.abs(gap).mean()),
                        "mean_gap": float(gap.mean()),
                        "first_tau_gap": float(gap[0]),
                        "tau_learned": t_learned,
                        "tau_exact": t_exact,
                        "tau_gap": t_learned - t_exact,
                        "threshold": float(threshold),
                        "criterion": CRITERIA[name],
                        "taus_within": int(ok.sum()),
                        "agrees": bool(ok.all()),
                    }
                )
    return pd.DataFrame(rows)
