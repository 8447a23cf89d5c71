"""An offline renderer of Shapes3D-like scenes, written for this project.

The scene follows the original dataset's semantics: a room (floor and three walls), one object (cube,
cylinder, sphere or capsule) of a given scale standing in the middle of the floor, seen by a camera that
orbits the object by the orientation angle, lit by one directional light with Lambertian shading.
Colours come from the three hue factors as HSV hues at full saturation; shading scales the value.

Rendering is split in two, so the full 480,000-image grid never has to be held in memory:

1. *Geometry*, once per (scale, shape, orientation): ray casting (vectorised analytic ray-primitive
   intersections, 2x2 supersampling) gives, per pixel, the shaded coverage of each region
   (floor, wall, object): ``cover[r, y, x] = mean over subsamples of shade * [hit region r]``.
2. *Colour*, per hue triple: ``image = sum_r cover[r] * rgb(hue_r)``, a broadcast multiply-add.

Because colour enters linearly and per region, changing one hue factor changes exactly the pixels
that region covers, as in the original data.
"""

from __future__ import annotations

import colorsys
import itertools
from dataclasses import dataclass
from typing import Iterator, Sequence

import numpy as np

from .factors import FACTORS, N_LEVELS

FLOOR, WALL, OBJECT = 0, 1, 2
ROOM_HALF = 3.0  # walls at x = +-3 and z = -3; floor at y = 0
CAMERA_DISTANCE = 4.2
CAMERA_HEIGHT = 1.9
LOOK_AT = np.array([0.0, 0.45, 0.0])
FOV_DEG = 44.0
LIGHT_DIR = np.array([0.45, 0.85, 0.6]) / np.linalg.norm([0.45, 0.85, 0.6])
AMBIENT = 0.35
BASE_SIZE = 1.2  # object height at scale 1.0


def level_subset(n_levels: int, k: int) -> np.ndarray:
    """``k`` evenly spaced level indices out of ``n_levels`` (all of them when k == n_levels)."""
    if not 1 <= k <= n_levels:
        raise ValueError(f"cannot choose {k} of {n_levels} levels")
    return np.unique(np.round(np.linspace(0, n_levels - 1, k)).astype(np.int64))


def hue_rgb(hue: float) -> np.ndarray:
    """RGB in [0, 1] of an HSV colour with the given hue, full saturation and value."""
    return np.array(colorsys.hsv_to_rgb(float(hue) % 1.0, 1.0, 1.0), dtype=np.float32)


def _camera_rays(resolution: int, azimuth_deg: float, ss: int) -> tuple[np.ndarray, np.ndarray]:
    """Origin (3,) and unit directions (R*ss, R*ss, 3) of a pinhole camera orbiting the y axis."""
    az = np.deg2rad(azimuth_deg)
    origin = np.array([CAMERA_DISTANCE * np.sin(az), CAMERA_HEIGHT, CAMERA_DISTANCE * np.cos(az)])
    forward = LOOK_AT - origin
    forward /= np.linalg.norm(forward)
    right = np.cross(forward, [0.0, 1.0, 0.0])
    right /= np.linalg.norm(right)
    up = np.cross(right, forward)
    n = resolution * ss
    half = np.tan(np.deg2rad(FOV_DEG) / 2)
    coords = (np.arange(n) + 0.5) / n * 2 - 1  # pixel centres in [-1, 1]
    u, v = np.meshgrid(coords * half, -coords * half)  # v: image rows go down
    dirs = forward + u[..., None] * right + v[..., None] * up
    dirs /= np.linalg.norm(dirs, axis=-1, keepdims=True)
    return origin, dirs


def _plane(o, d, axis: int, value: float, sign: float):
    """Hit distance of rays with the plane x[axis] = value, facing ``sign`` (inf where missed)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        t = (value - o[axis]) / d[..., axis]
    t = np.where(t > 1e-6, t, np.inf)
    normal = np.zeros(3)
    normal[axis] = sign
    return t, np.broadcast_to(normal, d.shape)


def _sphere(o, d, centre, radius):
    oc = o - centre
    b = d @ oc
    c = oc @ oc - radius**2
    disc = b**2 - c
    t = np.where(disc >= 0, -b - np.sqrt(np.maximum(disc, 0)), np.inf)
    t = np.where(t > 1e-6, t, np.inf)
    p = o + t[..., None] * d
    n = (p - centre) / radius
    return t, n


def _box(o, d, lo, hi):
    with np.errstate(divide="ignore", invalid="ignore"):
        t1 = (lo - o) / d
        t2 = (hi - o) / d
    tmin = np.minimum(t1, t2)
    tmax = np.maximum(t1, t2)
    t_near = tmin.max(axis=-1)
    t_far = tmax.min(axis=-1)
    hit = (t_near <= t_far) & (t_near > 1e-6)
    t = np.where(hit, t_near, np.inf)
    axis = tmin.argmax(axis=-1)
    n = np.zeros(d.shape)
    np.put_along_axis(n, axis[..., None], -np.sign(np.take_along_axis(d, axis[..., None], -1)), -1)
    return t, n


def _vertical_cylinder(o, d, radius, y0, y1):
    """Finite vertical cylinder (axis = y) with caps."""
    a = d[..., 0] ** 2 + d[..., 2] ** 2
    b = o[0] * d[..., 0] + o[2] * d[..., 2]
    c = o[0] ** 2 + o[2] ** 2 - radius**2
    disc = b**2 - a * c
    with np.errstate(divide="ignore", invalid="ignore"):
        ts = np.where(disc >= 0, (-b - np.sqrt(np.maximum(disc, 0))) / a, np.inf)
    y = o[1] + ts * d[..., 1]
    ts = np.where((ts > 1e-6) & (y >= y0) & (y <= y1), ts, np.inf)
    p = o + np.where(np.isfinite(ts), ts, 0)[..., None] * d
    n_side = np.stack([p[..., 0], np.zeros_like(ts), p[..., 2]], -1) / radius
    # top cap (the bottom one rests on the floor and is never visible)
    with np.errstate(divide="ignore", invalid="ignore"):
        tc = (y1 - o[1]) / d[..., 1]
    pc = o + np.where(np.isfinite(tc), tc, 0)[..., None] * d
    tc = np.where((tc > 1e-6) & (pc[..., 0] ** 2 + pc[..., 2] ** 2 <= radius**2), tc, np.inf)
    use_cap = tc < ts
    t = np.where(use_cap, tc, ts)
    n = np.where(use_cap[..., None], np.array([0.0, 1.0, 0.0]), n_side)
    return t, n


def _object(o, d, shape: int, scale: float):
    h = BASE_SIZE * scale
    if shape == 0:  # cube
        s = h / 2
        return _box(o, d, np.array([-s, 0.0, -s]), np.array([s, h, s]))
    if shape == 1:  # cylinder
        return _vertical_cylinder(o, d, 0.5 * h, 0.0, h)
    if shape == 2:  # sphere
        return _sphere(o, d, np.array([0.0, h / 2, 0.0]), h / 2)
    if shape == 3:  # capsule: a cylinder with two hemispherical ends
        r = 0.32 * h
        t, n = _vertical_cylinder(o, d, r, r, h - r)
        for cy in (r, h - r):
            ts, ns = _sphere(o, d, np.array([0.0, cy, 0.0]), r)
            closer = ts < t
            t = np.where(closer, ts, t)
            n = np.where(closer[..., None], ns, n)
        return t, n
    raise ValueError(f"shape index must be 0..3, got {shape}")


def render_geometry(resolution: int, scale: float, shape: int, orientation: float, supersample: int = 2) -> np.ndarray:
    """Shaded coverage of floor, wall and object for one view.

    Args:
        resolution: image side in pixels.
        scale: object scale (official values 0.75..1.25).
        shape: 0 cube, 1 cylinder, 2 sphere, 3 capsule.
        orientation: camera azimuth in degrees (official values -30..30).
        supersample: rays per pixel side (anti-aliasing).

    Returns:
        float32 array (3, resolution, resolution): for region r (FLOOR, WALL, OBJECT), the pixel's mean
        over its rays of shade * [ray hits r]. The three regions' coverages sum to the pixel's mean shade.
    """
    o, d = _camera_rays(resolution, orientation, supersample)
    hits = [
        _plane(o, d, 1, 0.0, 1.0),  # floor y = 0
        _plane(o, d, 2, -ROOM_HALF, 1.0),  # back wall z = -3
        _plane(o, d, 0, -ROOM_HALF, 1.0),  # left wall x = -3
        _plane(o, d, 0, ROOM_HALF, -1.0),  # right wall x = +3
        _object(o, d, shape, scale),
    ]
    region_of = np.array([FLOOR, WALL, WALL, WALL, OBJECT])
    ts = np.stack([t for t, _ in hits])
    first = ts.argmin(axis=0)
    t_hit = np.take_along_axis(ts, first[None], 0)[0]
    normals = np.stack([n for _, n in hits])
    normal = np.take_along_axis(normals, first[None, ..., None], 0)[0]
    region = np.where(np.isfinite(t_hit), region_of[first], WALL)  # rays into the open sky: wall colour
    # Lambertian shading; the object's shadow-free shading plus a gentle distance falloff for the room.
    lambert = np.clip(normal @ LIGHT_DIR, 0.0, 1.0)
    shade = AMBIENT + (1 - AMBIENT) * lambert
    room = region != OBJECT
    falloff = np.clip(1.15 - 0.035 * np.where(np.isfinite(t_hit), t_hit, 12.0), 0.6, 1.0)
    shade = np.where(room, (0.55 + 0.45 * shade) * falloff, shade)
    n = resolution
    ss = supersample
    cover = np.zeros((3, n, n), dtype=np.float64)
    for r in (FLOOR, WALL, OBJECT):
        x = np.where(region == r, shade, 0.0).reshape(n, ss, n, ss)
        cover[r] = x.mean(axis=(1, 3))
    return cover.astype(np.float32)


def _region_colour(cover_r: np.ndarray, rgb: np.ndarray) -> np.ndarray:
    """One region's contribution ``cover_r * rgb * 255`` in fixed point (units of 1/256 level), uint16.

    Three contributions sum to at most 255 * 256 + 2 (coverages sum to the mean shade <= 1), so the sum
    of a floor, a wall and an object contribution never overflows uint16.
    """
    return np.rint(cover_r[..., None] * (rgb * (255.0 * 256.0))).astype(np.uint16)


def _to_uint8(total: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """Fixed-point sum (uint16, 1/256 level) -> uint8, rounded to nearest."""
    total += 128
    return (
        np.right_shift(total, 8, out=out, casting="unsafe", dtype=np.uint16)
        if out is not None
        else (total >> 8).astype(np.uint8)
    )


def colourise(cover: np.ndarray, floor_hue: float, wall_hue: float, object_hue: float) -> np.ndarray:
    """uint8 image(s) (..., H, W, 3) from coverage (..., 3, H, W) and the three hues.

    ``image = sum_r cover_r * rgb(hue_r)``, computed in the same fixed point as :func:`iter_grid_images`,
    so a direct render is bit-identical to the image in the grid file.
    """
    hues = (floor_hue, wall_hue, object_hue)
    total = sum(_region_colour(cover[..., r, :, :], hue_rgb(hues[r])) for r in (FLOOR, WALL, OBJECT))
    return _to_uint8(total)


@dataclass(frozen=True)
class GridSpec:
    """Which official levels of each factor are rendered, and at what resolution."""

    resolution: int
    levels: tuple[np.ndarray, ...]  # per factor, sorted official level indices

    @classmethod
    def from_counts(cls, resolution: int, counts: Sequence[int]) -> "GridSpec":
        """Evenly spaced ``counts[k]`` levels of each factor (official order)."""
        if len(counts) != len(FACTORS):
            raise ValueError(f"need {len(FACTORS)} level counts, got {len(counts)}")
        return cls(resolution, tuple(level_subset(n, k) for n, k in zip(N_LEVELS, counts)))

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(len(lv) for lv in self.levels)

    @property
    def n_images(self) -> int:
        return int(np.prod(self.shape))

    def label_indices(self) -> np.ndarray:
        """(N, 6) official level indices of every image, in row-major order of the grid."""
        return np.array(list(itertools.product(*self.levels)), dtype=np.int64).reshape(-1, len(FACTORS))


def iter_grid_images(spec: GridSpec, chunk_hues: int = 8) -> Iterator[tuple[int, np.ndarray]]:
    """Yield (start index, uint8 images) chunks of the grid in row-major order.

    The geometry (scale, shape, orientation) varies fastest, so each hue triple is one contiguous block
    of ``n_geometry`` images; ``chunk_hues`` hue triples are coloured per chunk. Each region's
    contribution is precomputed once per hue level (a lookup table of uint16 fixed-point images), so
    colouring one hue triple is two integer additions and a shift over its block.
    """
    geoms = list(
        itertools.product(FACTORS[3].values[spec.levels[3]], spec.levels[4], FACTORS[5].values[spec.levels[5]])
    )
    cover = np.stack([render_geometry(spec.resolution, float(s), int(sh), float(o)) for s, sh, o in geoms])
    lut = [
        [_region_colour(cover[:, r], hue_rgb(h)) for h in FACTORS[r].values[spec.levels[r]]]
        for r in (FLOOR, WALL, OBJECT)
    ]  # lut[region][level] : (n_geometry, H, W, 3) uint16
    triples = list(itertools.product(*(range(len(spec.levels[r])) for r in (FLOOR, WALL, OBJECT))))
    n_geom, res = len(geoms), spec.resolution
    total = np.empty((chunk_hues, n_geom, res, res, 3), np.uint16)
    for i in range(0, len(triples), chunk_hues):
        batch = triples[i : i + chunk_hues]
        for j, (a, b, c) in enumerate(batch):
            np.add(lut[FLOOR][a], lut[WALL][b], out=total[j])
            total[j] += lut[OBJECT][c]
        images = np.empty((len(batch), n_geom, res, res, 3), np.uint8)
        _to_uint8(total[: len(batch)], out=images)
        yield i * n_geom, images.reshape(-1, res, res, 3)
