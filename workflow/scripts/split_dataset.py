"""Snakemake adapter: seeded train/test split of the dataset."""

from latent_abstractions import io
from latent_abstractions.runtime import setup_logging
from latent_abstractions.shapes3d import load_shapes3d, make_split

log = setup_logging(snakemake.log[0])
data = load_shapes3d(snakemake.input.h5)
split = make_split(data.n, snakemake.params.test_fraction, snakemake.params.seed)
log.info("%s: %d images, %d test", data.path, data.n, (split["split"] == "test").sum())
io.write_parquet(split, snakemake.output.split, {"dataset": str(data.path), "seed": snakemake.params.seed,
                                                 "test_fraction": snakemake.params.test_fraction})
