"""The extract_features stage on a real (synthetic) Shapes3D file and a saved tiny NCSN++.

The probe stage runs on its table.
"""

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from latent_abstractions.data.factors import FACTOR_NAMES
from latent_abstractions.data.render import GridSpec
from latent_abstractions.data.shapes3d import load_shapes3d, make_split, to_model_input, write_synthetic
from latent_abstractions.measure.features import pool
from latent_abstractions.model.checkpoint import save_model
from latent_abstractions.model.networks import NCSNpp
from latent_abstractions.model.precond import RawVE
from latent_abstractions.stages.linear_probes import fit_linear_probes, load_features
from latent_abstractions.stages.measurements import extract_features

TAUS = np.array([0.0, 0.5, 1.0])


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    d = tmp_path_factory.mktemp("features")
    write_synthetic(d / "data.h5", GridSpec.from_counts(8, [2, 2, 2, 1, 2, 1]), progress=False)
    make_split(16, 0.5, seed=0).to_parquet(d / "split.parquet")
    torch.manual_seed(0)
    net = RawVE(NCSNpp(8, nf=8, ch_mult=(1, 2), num_res_blocks=1, attn_resolutions=()))
    model = (d / "model.pt", d / "hparams.json")
    save_model(*model, net, {**net.hparams, "sigma_min": 0.01, "sigma_max": 5.0})
    kw = dict(
        taus=TAUS,
        layers=[net.feature_names()[-1]],
        pooling="grid",
        grid=2,
        n_train=6,
        n_test=5,
        batch_size=4,
        seed=3,
        device=torch.device("cpu"),
    )
    extract_features(*model, d / "data.h5", d / "split.parquet", d / "f.parquet", **kw)
    extract_features(*model, d / "data.h5", d / "split.parquet", d / "g.parquet", **{**kw, "batch_size": 11})
    return d, kw


def test_table_schema_and_batch_size_independence(run):
    d, kw = run
    df = pd.read_parquet(d / "f.parquet")
    assert set(df["layer"]) == {kw["layers"][0], "pixels"} and set(df["tau"]) == set(TAUS)
    assert (df.groupby("split")["image_index"].nunique() == pd.Series({"test": 5, "train": 6})).all()
    assert len(df) == 11 * len(TAUS) * 2 and set(FACTOR_NAMES) <= set(df.columns)
    widths = df.groupby("layer")["features"].apply(lambda s: {len(v) for v in s})
    assert widths["pixels"] == {3 * 8 * 8}  # noisy pixels avg-pooled to 8 x 8
    assert len(widths[kw["layers"][0]]) == 1 and df["features"].iloc[0].dtype == np.float32
    assert (d / "f.parquet").read_bytes() == (d / "g.parquet").read_bytes()


def test_pixels_at_tau_one_are_the_pooled_clean_images(run):
    d, _ = run
    feats, labs = load_features(d / "f.parquet", "pixels", 1.0)
    df = pd.read_parquet(d / "f.parquet")
    idx = df[(df.layer == "pixels") & (df.tau == 1.0) & (df.split == "test")]["image_index"].to_numpy()
    data = load_shapes3d(d / "data.h5")
    clean = F.adaptive_avg_pool2d(to_model_input(data.images(idx)), 8).flatten(1).numpy()
    assert np.abs(feats["test"] - clean).max() < 0.05  # sigma(t=0) = sigma_min = 0.01
    assert np.array_equal(labs["test"], data.label_indices[idx])
    noisy, _ = load_features(d / "f.parquet", "pixels", 0.0)
    assert np.abs(noisy["test"] - clean).std() > 1.0  # sigma_max = 5 at tau = 0


def test_probes_read_the_table(run):
    d, _ = run
    df = fit_linear_probes(d / "f.parquet", d / "p.parquet", C=1.0, max_iter=50, n_bootstrap=20, seed=0)
    assert (df["ci_low"] <= df["ci_high"]).all()
    assert len(df) == len(TAUS) * 2 * 6
    assert (df[df.factor == "scale"]["accuracy"] == 1.0).all()  # one level present: constant factor


def test_pool_shapes_and_bad_pooling():
    h = torch.arange(2 * 3 * 4 * 4, dtype=torch.float32).reshape(2, 3, 4, 4)
    assert torch.equal(pool(h, "mean", 2), h.mean((2, 3)))
    assert pool(h, "grid", 2).shape == (2, 12)
    with pytest.raises(ValueError, match="pooling"):
        pool(h, "max", 2)


@pytest.mark.parametrize("bound", [4096, 20_000])
def test_bounded_row_groups_hold_the_same_rows_and_give_the_same_probes(run, tmp_path, monkeypatch, bound):
    """Row groups of at most ``bound`` bytes of Arrow data (a cell split over several, or cells sharing one): the same
    rows in the same order, each cell read from its own row groups only, and byte-identical probes."""
    import pyarrow.parquet as pq

    from latent_abstractions.stages import feature_table

    d, kw = run
    monkeypatch.setattr(feature_table, "ROW_GROUP_BYTES", bound)
    model = (d / "model.pt", d / "hparams.json")
    extract_features(*model, d / "data.h5", d / "split.parquet", tmp_path / "f.parquet", **kw)
    one, many = pq.ParquetFile(d / "f.parquet"), pq.ParquetFile(tmp_path / "f.parquet")
    assert one.metadata.num_row_groups == 1 and many.metadata.num_row_groups > 1
    assert many.schema_arrow.equals(one.schema_arrow, check_metadata=True)
    assert many.read().equals(one.read())
    cells = pd.read_parquet(d / "f.parquet", columns=["layer", "tau"]).drop_duplicates()
    sizes = []
    for layer, tau in cells.itertuples(index=False):
        groups = feature_table.cell_row_groups(many, layer, tau)
        rows = many.read_row_groups(groups).to_pandas()
        sizes.append(len(groups))
        assert ((rows["layer"] == layer) & (rows["tau"] == tau)).any() and len(groups) < many.metadata.num_row_groups
        for g in range(many.metadata.num_row_groups):  # every row group outside the list holds none of the cell
            if g not in groups:
                other = many.read_row_group(g).to_pandas()
                assert not ((other["layer"] == layer) & (other["tau"] == tau)).any()
    cells_per_group = []
    for g in range(many.metadata.num_row_groups):
        group = many.read_row_group(g)
        cells_per_group.append(len(group.select(["layer", "tau"]).to_pandas().drop_duplicates()))
        assert group.nbytes <= bound or cells_per_group[-1] == 1
    if bound == 4096:  # every cell is over the bound: row groups of its own, several per cell
        assert max(cells_per_group) == 1 and max(sizes) > 1
    else:  # cells under the bound share row groups
        assert max(cells_per_group) > 1
    probes = dict(C=1.0, max_iter=50, n_bootstrap=20, seed=0)
    fit_linear_probes(d / "f.parquet", tmp_path / "p1.parquet", **probes)
    fit_linear_probes(tmp_path / "f.parquet", tmp_path / "p2.parquet", **probes)
    assert (tmp_path / "p1.parquet").read_bytes() == (tmp_path / "p2.parquet").read_bytes()


def test_a_failed_extraction_leaves_no_table(run, tmp_path, monkeypatch):
    from latent_abstractions.stages import measurements

    d, kw = run
    calls = []

    def fail_on_second_tau(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("killed")
        return real(*args, **kwargs)

    real = measurements.pooled_features
    monkeypatch.setattr(measurements, "pooled_features", fail_on_second_tau)
    with pytest.raises(RuntimeError, match="killed"):
        extract_features(
            d / "model.pt", d / "hparams.json", d / "data.h5", d / "split.parquet", tmp_path / "f.parquet", **kw
        )
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("bound", [None, 4096, 20_000])
@pytest.mark.parametrize("n_shards", [2, 3])
def test_tau_shards_gather_into_the_unsharded_bytes(run, tmp_path, monkeypatch, bound, n_shards):
    """Features extracted in tau shards and gathered, and probes fitted per shard and gathered, are byte for byte
    the unsharded table and probes, whatever the row groups (one, a cell over several, cells sharing one)."""
    from latent_abstractions.stages import feature_table
    from latent_abstractions.stages.linear_probes import gather_linear_probes

    d, kw = run
    if bound is not None:
        monkeypatch.setattr(feature_table, "ROW_GROUP_BYTES", bound)
    model = (d / "model.pt", d / "hparams.json")
    whole = tmp_path / "whole.parquet"
    extract_features(*model, d / "data.h5", d / "split.parquet", whole, **kw)
    parts = [tmp_path / f"f.{k}.parquet" for k in range(n_shards)]
    for k, part in enumerate(parts):
        extract_features(*model, d / "data.h5", d / "split.parquet", part, **kw, shard=(k, n_shards))
    assert sorted(t for p in parts for t in set(pd.read_parquet(p, columns=["tau"])["tau"])) == TAUS.tolist()
    feature_table.gather_feature_tables(parts, tmp_path / "gathered.parquet")
    assert (tmp_path / "gathered.parquet").read_bytes() == whole.read_bytes()

    probes = dict(C=1.0, max_iter=50, n_bootstrap=20, seed=0)
    fit_linear_probes(whole, tmp_path / "p.parquet", **probes)
    probe_parts = [tmp_path / f"p.{k}.npz" for k in range(n_shards)]
    for k, part in enumerate(probe_parts):
        assert fit_linear_probes(whole, part, **probes, shard=(k, n_shards)) is None
    gather_linear_probes(probe_parts, tmp_path / "pg.parquet")
    assert (tmp_path / "pg.parquet").read_bytes() == (tmp_path / "p.parquet").read_bytes()


def test_a_gather_refuses_parts_of_another_run_or_out_of_order(run, tmp_path):
    from latent_abstractions.stages.feature_table import gather_feature_tables
    from latent_abstractions.stages.linear_probes import gather_linear_probes

    d, kw = run
    model = (d / "model.pt", d / "hparams.json")
    a, b = tmp_path / "a.parquet", tmp_path / "b.parquet"
    extract_features(*model, d / "data.h5", d / "split.parquet", a, **kw, shard=(0, 2))
    extract_features(*model, d / "data.h5", d / "split.parquet", b, **{**kw, "seed": 4}, shard=(1, 2))
    with pytest.raises(ValueError, match=r"b\.parquet.*other settings.*seed"):
        gather_feature_tables([a, b], tmp_path / "out.parquet")
    probes = dict(C=1.0, max_iter=50, n_bootstrap=20, seed=0)
    parts = [tmp_path / f"p.{k}.npz" for k in range(2)]
    for k, part in enumerate(parts):
        fit_linear_probes(d / "f.parquet", part, **probes, shard=(k, 2))
    with pytest.raises(ValueError, match=r"p\.1\.npz: shard \[1, 2\] where shard \[0, 2\] was expected"):
        gather_linear_probes(parts[::-1], tmp_path / "out.parquet")
    parts[1].write_bytes(b"not a part")
    with pytest.raises(ValueError, match=r"p\.1\.npz: not a tau-shard part"):
        gather_linear_probes(parts, tmp_path / "out.parquet")
    assert not (tmp_path / "out.parquet").exists()
