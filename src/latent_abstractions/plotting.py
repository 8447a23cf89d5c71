"""Figures: one style and one colour per factor everywhere.

Time convention on every axis: generative time tau, 0 = noise, 1 = data.
"""

from __future__ import annotations

import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from . import io  # noqa: E402
from .factors import FACTOR_NAMES, FACTORS, SHAPE_NAMES  # noqa: E402

TAU_LABEL = "generative time τ (0 = noise, 1 = data)"
FACTOR_COLOURS = dict(zip(FACTOR_NAMES, sns.color_palette("colorblind", len(FACTOR_NAMES))))


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
    return (f"fl {f[0].values[indices[0]]:.1f} wa {f[1].values[indices[1]]:.1f} ob {f[2].values[indices[2]]:.1f}\n"
            f"sc {f[3].values[indices[3]]:.2f} {SHAPE_NAMES[indices[4]]} {f[5].values[indices[5]]:+.0f}°")


def image_grid(images: np.ndarray, path: str | os.PathLike, titles: list[str] | None = None,
               ncols: int = 8, title: str | None = None) -> None:
    """A grid of uint8 images (n, H, W, 3), optionally titled, saved to ``path``."""
    n = len(images)
    ncols = min(ncols, n)
    nrows = int(np.ceil(n / ncols))
    size = 1.6 if titles else 1.1
    fig, axes = plt.subplots(nrows, ncols, figsize=(size * ncols, (size + (0.45 if titles else 0)) * nrows),
                             squeeze=False)
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
    image_grid(data.images(idx), path, titles=[label_text(data.label_indices[i]) for i in idx],
               title=f"{data.path.name}: {data.n} images, {data.resolution}x{data.resolution}")
