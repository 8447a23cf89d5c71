"""Factor definitions (official Shapes3D values) and the atomic I/O helpers."""

import numpy as np
import pandas as pd
import pytest

from latent_abstractions import io
from latent_abstractions.data import factors


def test_official_grid():
    assert factors.FACTOR_NAMES == ("floor_hue", "wall_hue", "object_hue", "scale", "shape", "orientation")
    assert factors.N_LEVELS == (10, 10, 10, 8, 4, 15)
    assert factors.N_IMAGES_FULL == 480_000
    np.testing.assert_allclose(factors.FACTORS[0].values, np.arange(10) / 10)
    np.testing.assert_allclose(factors.FACTORS[3].values, np.linspace(0.75, 1.25, 8))
    np.testing.assert_allclose(factors.FACTORS[5].values, np.linspace(-30, 30, 15))


def test_values_indices_roundtrip_and_rejection():
    rng = np.random.default_rng(0)
    idx = np.stack([rng.integers(0, n, 50) for n in factors.N_LEVELS], axis=1)
    vals = np.stack([f.values[idx[:, k]] for k, f in enumerate(factors.FACTORS)], axis=1)
    np.testing.assert_array_equal(factors.values_to_indices(vals), idx)
    vals[3, 3] = 0.8  # not an official scale value
    with pytest.raises(ValueError, match=r"^factor 'scale': value 0\.8 is not one of the official values \[0\.75, "):
        factors.values_to_indices(vals)  # a plain number, not np.float64(0.8)
    with pytest.raises(ValueError, match="shape"):
        factors.values_to_indices(np.zeros((2, 5)))


def test_atomic_path_leaves_nothing_on_error(tmp_path):
    target = tmp_path / "out.bin"
    with pytest.raises(RuntimeError):
        with io.atomic_path(target) as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("crash mid-write")
    assert not target.exists()
    assert list(tmp_path.iterdir()) == []
    with io.atomic_path(target) as tmp:
        tmp.write_bytes(b"whole")
    assert target.read_bytes() == b"whole"


def test_parquet_roundtrip_with_provenance_is_byte_stable(tmp_path):
    df = pd.DataFrame({"tau": [0.0, 0.5, 1.0], "factor": ["shape"] * 3, "accuracy": [0.25, 0.5, 1.0]})
    a, b = tmp_path / "a.parquet", tmp_path / "b.parquet"
    io.write_parquet(df, a, {"seed": 0, "checkpoint": "abc"})
    io.write_parquet(df, b, {"checkpoint": "abc", "seed": 0})
    pd.testing.assert_frame_equal(pd.read_parquet(a), df)
    assert io.read_parquet_metadata(a) == {"seed": 0, "checkpoint": "abc"}
    assert a.read_bytes() == b.read_bytes()
