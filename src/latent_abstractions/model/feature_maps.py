"""The names of the layers a features table can hold: the score network's feature maps and the pixel baseline.

:class:`networks.NCSNpp` names its maps with these functions, and the pre-flight check (``preflight.py``) lists
the maps a configured network will have without building one. This module imports no torch, so that checking
the config at the start of every Snakemake command stays fast.

The maps, input to output: one per resolution level on the way down (``enc_<side>``), the bottleneck, and one
per level on the way back up (``dec_<side>``), where ``side`` is the map's side in pixels: the image side,
halved between levels.
"""

from __future__ import annotations

BOTTLENECK = "bottleneck"
#: The features table's baseline layer: the noisy input images themselves, average-pooled. It is not a map of
#: the network (``forward_features`` does not return it), so no map may take this name.
PIXELS = "pixels"


def level_sides(img_resolution: int, n_levels: int) -> list[int]:
    """The feature-map side at each of ``n_levels`` resolution levels: the image side, halved between levels."""
    return [img_resolution // 2**level for level in range(n_levels)]


def encoder_map(side: int) -> str:
    """Name of the encoder's map at a level whose maps are ``side`` pixels wide."""
    return f"enc_{side}"


def decoder_map(side: int) -> str:
    """Name of the decoder's map at a level whose maps are ``side`` pixels wide."""
    return f"dec_{side}"


def feature_map_names(img_resolution: int, n_levels: int) -> list[str]:
    """The maps of a network with ``n_levels`` resolution levels (``len(ch_mult)``) on ``img_resolution``-pixel
    images, input to output: what :meth:`networks.NCSNpp.feature_names` returns."""
    sides = level_sides(img_resolution, n_levels)
    return [encoder_map(s) for s in sides] + [BOTTLENECK] + [decoder_map(s) for s in reversed(sides)]
