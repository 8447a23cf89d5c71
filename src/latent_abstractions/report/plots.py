"""Figures: one style and one colour per factor everywhere.

Time convention on every axis: generative time tau, 0 = noise, 1 = data.
"""

from __future__ import annotations

import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.patheffects as pe  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from .. import io  # noqa: E402
from ..data.factors import FACTOR_NAMES, FACTORS, SHAPE_NAMES  # noqa: E402
from ..measure.agreement import exact_reference, mi_tolerance  # noqa: E402

TAU_LABEL = "generative time τ (0 = noise, 1 = data)"
FACTOR_COLOURS = dict(zip(FACTOR_NAMES, sns.color_palette("colorblind", len(FACTOR_NAMES))))
#: The one style of every exact-filter overlay: black dashed, over a pale halo of the factor's colour.
EXACT_STYLE = {"color": "black", "ls": "--", "lw": 1.1}
EXACT_LABEL = "exact filter (black dashed)"


def set_style() -> None:
    sns.set_theme(context="paper", style="whitegrid", font_scale=1.1)


def save(fig, path: str | os.PathLike) -> None:
    """Save ``fig`` atomically to ``path`` and, for a .pdf path, also to the .png beside it."""
    path = str(path)
    targets = [path] + ([path[:-4] + ".png"] if path.endswith(".pdf") else [])
    for target in targets:
        with io.atomic_path(target) as tmp:
            fig.savefig(tmp, format=target.rsplit(".", 1)[1], dpi=150, bbox_inches="tight")
    plt.close(fig)


def label_text(indices: np.ndarray) -> str:
    """Short text for one image's six official level indices."""
    f = FACTORS
    return (
        f"fl {f[0].values[indices[0]]:.1f} wa {f[1].values[indices[1]]:.1f} ob {f[2].values[indices[2]]:.1f}\n"
        f"sc {f[3].values[indices[3]]:.2f} {SHAPE_NAMES[indices[4]]} {f[5].values[indices[5]]:+.0f}°"
    )


def image_grid(
    images: np.ndarray,
    path: str | os.PathLike,
    titles: list[str] | None = None,
    ncols: int = 8,
    title: str | None = None,
) -> None:
    """A grid of uint8 images (n, H, W, 3), optionally titled, saved to ``path``."""
    n = len(images)
    ncols = min(ncols, n)
    nrows = int(np.ceil(n / ncols))
    size = 1.6 if titles else 1.1
    fig, axes = plt.subplots(
        nrows, ncols, figsize=(size * ncols, (size + (0.45 if titles else 0)) * nrows), squeeze=False
    )
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i < n:
            ax.imshow(images[i], interpolation="nearest")
            if titles:
                ax.set_title(titles[i], fontsize=6)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    save(fig, path)


def contact_sheet(data, path: str | os.PathLike, n: int = 32, seed: int = 0) -> None:
    """Random images of a :class:`~latent_abstractions.shapes3d.Shapes3D` with their factor values."""
    rng = np.random.default_rng(seed)
    idx = np.sort(rng.choice(data.n, size=min(n, data.n), replace=False))
    image_grid(
        data.images(idx),
        path,
        titles=[label_text(data.label_indices[i]) for i in idx],
        title=f"{data.path.name}: {data.n} images, {data.resolution}x{data.resolution}",
    )


def _curves(ax, df, value, lo=None, hi=None, dashed=False, label_suffix=""):
    """One line per factor (fixed colours) with an optional band between columns lo and hi."""
    for factor in FACTOR_NAMES:
        d = df[df["factor"] == factor].sort_values("tau")
        if d.empty:
            continue
        colour = FACTOR_COLOURS[factor]
        ax.plot(
            d["tau"],
            d[value],
            color=colour,
            lw=1.2 if dashed else 2,
            ls="--" if dashed else "-",
            marker=None if dashed else "o",
            ms=3,
            label=None if dashed else f"{factor}{label_suffix}",
        )
        if lo is not None:
            ax.fill_between(d["tau"], d[lo], d[hi], color=colour, alpha=0.15 if not dashed else 0.07, lw=0)
    ax.set_xlabel(TAU_LABEL)
    ax.set_xlim(0, 1)


def _exact_overlay(ax, exact: pd.DataFrame | None, value: str, label: str = EXACT_LABEL, **style) -> None:
    """The exact filter's curve of every factor in :data:`EXACT_STYLE` (one legend entry for all factors)."""
    if exact is None or exact.empty:
        return
    if "mixture" in exact:
        exact = exact[exact["mixture"] == "all"]
    first = True
    for factor in FACTOR_NAMES:
        d = exact[exact["factor"] == factor].sort_values("tau")
        if d.empty:
            continue
        halo = [pe.Stroke(linewidth=3.5, foreground=FACTOR_COLOURS[factor], alpha=0.45), pe.Normal()]
        ax.plot(d["tau"], d[value], **{**EXACT_STYLE, **style}, path_effects=halo, label=label if first else None)
        first = False


def draw_probes(probes: pd.DataFrame, path, exact: pd.DataFrame | None = None) -> None:
    """Probe accuracy vs tau per factor: network layers solid with 95% CI bands, raw pixels dashed, chance dotted."""
    set_style()
    layers = [lay for lay in sorted(probes["layer"].unique()) if lay != "pixels"]
    fig, axes = plt.subplots(1, len(layers), figsize=(6.5 * len(layers), 4.2), squeeze=False)
    for ax, layer in zip(axes[0], layers):
        _curves(ax, probes[probes["layer"] == layer], "accuracy", "ci_low", "ci_high")
        _curves(ax, probes[probes["layer"] == "pixels"], "accuracy", dashed=True)
        _exact_overlay(ax, exact, "bayes_accuracy", label="Bayes accuracy, exact filter (black dashed)")
        for factor in FACTOR_NAMES:
            chance = probes.loc[probes["factor"] == factor, "chance"]
            if len(chance):
                ax.axhline(float(chance.iloc[0]), color=FACTOR_COLOURS[factor], ls=":", lw=1)
        ax.set_ylim(0, 1.02)
        ax.set_ylabel("linear-probe test accuracy")
        ax.set_title(f"Linear probes on '{layer}' features (dashed: raw noisy pixels; dotted: chance)")
    axes[0][-1].legend(loc="lower right", fontsize=8)
    save(fig, path)


def draw_mutual_info(mi: pd.DataFrame, path, exact: pd.DataFrame | None = None) -> None:
    """I(Y_tau; factor) - I(Y_0; factor) vs tau with +-2 SE bands and the log(levels) ceilings.

    The learned estimator integrates the score gap from tau = 0, so it measures the information gained since the
    prior end; the exact curve is drawn in the same terms (exact MI minus its value at sigma_max).
    """
    set_style()
    d = mi.assign(lo=mi["mi"] - 2 * mi["se"], hi=mi["mi"] + 2 * mi["se"])
    fig, ax = plt.subplots(figsize=(7, 4.2))
    _curves(ax, d, "mi", "lo", "hi")
    if exact is not None:
        _exact_overlay(
            ax,
            exact.assign(gain=exact["mi"] - exact["mi_at_noise"]),
            "gain",
            label="exact filter: I(Y_τ) − I(Y_0) (black dashed)",
        )
    for factor in FACTOR_NAMES:
        ceil = mi.loc[mi["factor"] == factor, "ceiling"]
        if len(ceil):
            ax.axhline(float(ceil.iloc[0]), color=FACTOR_COLOURS[factor], ls=":", lw=1)
    ax.set_ylabel("I(Y_τ; factor) − I(Y_0; factor) [nats]")
    ax.set_title("Mutual information from conditional vs unconditional scores (dotted: log levels)")
    ax.legend(loc="upper left", fontsize=8)
    save(fig, path)


def draw_forking(forking: pd.DataFrame, path, exact: pd.DataFrame | None = None) -> None:
    """Normalised entropy of fork labels vs the fork time tau, with bootstrap CI bands over base trajectories.

    Exact filter: the expected plug-in entropy of as many forks as were run (dashed, the comparable curve) and
    the entropy of p(factor | y) itself, infinitely many forks (dotted).
    """
    set_style()
    fig, ax = plt.subplots(figsize=(7, 4.2))
    _curves(ax, forking, "entropy", "ci_low", "ci_high")
    if exact is not None and not exact.empty:
        k = int(exact["n_forks"].iloc[0])
        _exact_overlay(ax, exact, "entropy_k", label=f"exact filter, K = {k} forks (black dashed)")
        _exact_overlay(ax, exact, "entropy", label="exact filter, K → ∞ (black dotted)", ls=":", lw=1.0)
    ax.set_ylim(-0.02, 1.02)
    ax.set_ylabel("fork label entropy / log(levels)")
    ax.set_title("Forking: how undecided each factor is when the path forks at τ")
    ax.legend(loc="upper right", fontsize=8)
    save(fig, path)


#: How draw_agreement draws each score's curve (``agreement.SCORES``): the network in the factor's colour with its CI
#: band, the exact score (the measurement without model error) thin, dash-dotted, open squares and error bars.
SCORE_STYLES = {
    "network": {"lw": 2, "marker": "o", "ms": 3},
    "exact": {"lw": 1.2, "ls": "-.", "marker": "s", "ms": 3.5, "mfc": "white"},
}
SCORE_LABELS = {"network": "network", "exact": "exact score"}


def draw_agreement(
    mi: pd.DataFrame, forking: pd.DataFrame, exact: pd.DataFrame, gaps: pd.DataFrame | None, path
) -> None:
    """Measured vs exact, one panel per factor: MI (top row) and forking (bottom row), each against the range its
    agreement criterion allows (grey band).

    ``mi`` and ``forking`` may hold a ``score`` column (network / exact; without one: the network's): the curve
    measured on the exact score shows what the measurement itself gets wrong, the network's what the model adds.
    MI: I(Y_tau) - I(Y_0) with +-2 SE against the exact gain +- agreement.mi_tolerance, dotted log L. Forking: the
    mean entropy with its bootstrap CI against the exact K-fork reference and the 95% range of the same
    measurement on the exact law (``entropy_k_low`` .. ``entropy_k_high``). Panel titles give, from ``gaps``
    (tables/agreement.parquet), at how many taus each curve meets its criterion.
    """
    set_style()
    exact = exact_reference(exact)
    mi, forking = (d if "score" in d else d.assign(score="network") for d in (mi, forking))
    within = {}
    if gaps is not None and "taus_within" in gaps:
        g = gaps if "score" in gaps else gaps.assign(score="network")
        within = {(r.measurement, r.score, r.factor): (int(r.taus_within), int(r.n_taus)) for r in g.itertuples()}
    fig, axes = plt.subplots(2, len(FACTOR_NAMES), figsize=(2.6 * len(FACTOR_NAMES), 5.8), sharex=True, squeeze=False)
    for j, factor in enumerate(FACTOR_NAMES):
        colour = FACTOR_COLOURS[factor]
        e = exact[exact["factor"] == factor].sort_values("tau")
        for i, (name, table) in enumerate((("mutual_info", mi), ("forking", forking))):
            ax = axes[i, j]
            if name == "mutual_info":
                ref = e["mi_gain"].to_numpy()
                tol = mi_tolerance(e["n_levels"])
                lo, hi = ref - tol, ref + tol
            else:
                ref, lo, hi = (e[c].to_numpy() for c in ("entropy_k", "entropy_k_low", "entropy_k_high"))
                ax.set_ylim(-0.03, 1.03)
            ax.fill_between(e["tau"], lo, hi, color="0.6", alpha=0.35, lw=0)
            ax.plot(e["tau"], ref, **EXACT_STYLE)
            counts = []
            for score, style in SCORE_STYLES.items():
                d = table[(table["score"] == score) & (table["factor"] == factor)].sort_values("tau")
                if d.empty:
                    continue
                if name == "mutual_info":
                    y, y_lo, y_hi = d["mi"], d["mi"] - 2 * d["se"], d["mi"] + 2 * d["se"]
                else:
                    y, y_lo, y_hi = d["entropy"], d["ci_low"], d["ci_high"]
                if score == "network":
                    ax.fill_between(d["tau"], y_lo, y_hi, color=colour, alpha=0.2, lw=0)
                    ax.plot(d["tau"], y, color=colour, **style)
                else:
                    err = np.vstack([y - y_lo, y_hi - y])
                    ax.errorbar(d["tau"], y, yerr=err, color=colour, capsize=2, elinewidth=0.8, **style)
                ok = within.get((name, score, factor))
                if ok:
                    counts.append(f"{'net' if score == 'network' else 'exact'} {ok[0]}/{ok[1]}")
            ceiling = table.loc[table["factor"] == factor, "ceiling"] if "ceiling" in table else ()
            if name == "mutual_info" and len(ceiling):
                ax.axhline(float(ceiling.iloc[0]), color=colour, ls=":", lw=1)
            ax.set_title(factor + (f"\nτ within: {', '.join(counts)}" if counts else ""), fontsize=9)
            ax.set_xlim(0, 1)
            if i == 1:
                ax.set_xlabel("τ (0 = noise, 1 = data)", fontsize=8)
    axes[0, 0].set_ylabel("I(Y_τ) − I(Y_0) [nats]")
    axes[1, 0].set_ylabel("fork entropy / log(levels)")
    handles = [
        plt.Line2D([], [], color="0.3", **SCORE_STYLES["network"], label="network (with CI)"),
        plt.Line2D([], [], color="0.3", **SCORE_STYLES["exact"], label="exact score (with CI bars)"),
        plt.Line2D([], [], **EXACT_STYLE, label="exact filter"),
        plt.Rectangle((0, 0), 1, 1, color="0.6", alpha=0.35, lw=0, label="what the agreement criterion allows"),
    ]
    fig.legend(handles=handles, loc="lower center", ncol=4, fontsize=9, frameon=False, bbox_to_anchor=(0.5, -0.01))
    fig.suptitle(
        "MI and forking measured on the network and on the exact score vs the exact filter, factor by factor",
        fontsize=10,
    )
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    save(fig, path)


def draw_training_loss(losses: dict[str, pd.DataFrame], path) -> None:
    """Denoising score-matching loss vs step for each score model."""
    set_style()
    fig, ax = plt.subplots(figsize=(7, 4))
    for (name, df), colour in zip(losses.items(), sns.color_palette("dark", len(losses))):
        ax.plot(df["step"], df["loss"], label=name, color=colour)
    ax.set_yscale("log")
    ax.set_xlabel("training step")
    ax.set_ylabel("DSM loss (σ² weighting)")
    ax.set_title("Training loss of the score models")
    ax.legend()
    save(fig, path)


def draw_samples_forks(
    samples: np.ndarray, strips: np.ndarray, strip_taus: np.ndarray, path, n_samples: int = 16
) -> None:
    """Top: unconditional samples. Below: one row of forks per fork time tau (same base trajectory)."""
    set_style()
    n_samples = min(n_samples, len(samples))
    ncols = max(n_samples // 2, strips.shape[1] if strips.size else 1)
    nrows = 2 + len(strip_taus)
    fig, axes = plt.subplots(nrows, ncols, figsize=(1.1 * ncols, 1.25 * nrows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for i in range(n_samples):
        axes[i // (n_samples // 2 or 1)][i % (n_samples // 2 or 1)].imshow(samples[i])
    axes[0][0].set_title("unconditional samples (τ = 1)", fontsize=8, loc="left")
    for r, tau in enumerate(strip_taus):
        for k in range(strips.shape[1]):
            axes[2 + r][k].imshow(strips[r, k])
        axes[2 + r][0].set_title(f"forks from τ = {tau:.2f}", fontsize=8, loc="left")
    fig.suptitle(
        "Samples, and forks of one trajectory:\nfactors shared along a row were fixed before its τ", fontsize=9
    )
    fig.tight_layout()
    save(fig, path)


def draw_exact_filter(exact: pd.DataFrame, path, title: str = "The exact filter") -> None:
    """The exact filter's own curves per factor: MI / H(factor), Bayes accuracy, and fork entropy (K -> infinity)."""
    set_style()
    d = exact[exact["mixture"] == "all"] if "mixture" in exact else exact
    d = d.assign(mi_frac=d["mi"] / d["ceiling"].where(d["ceiling"] > 0))
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    for ax, (col, ylabel) in zip(
        axes,
        [
            ("mi_frac", "I(Y_τ; factor) / H(factor)"),
            ("bayes_accuracy", "Bayes accuracy E max p(factor | y)"),
            ("entropy", "H(factor | y) / log(levels): forks, K → ∞"),
        ],
    ):
        _curves(ax, d, col)
        ax.set_ylim(-0.02, 1.02)
        ax.set_ylabel(ylabel)
    axes[0].legend(loc="upper left", fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    save(fig, path)
