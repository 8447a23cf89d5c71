"""Snakemake adapter: contact sheet of dataset images with their labels."""

from latent_abstractions.plotting import contact_sheet
from latent_abstractions.runtime import setup_logging
from latent_abstractions.shapes3d import load_shapes3d

log = setup_logging(snakemake.log[0])
data = load_shapes3d(snakemake.input.h5)
log.info("%s: %d images at %dx%d, levels present per factor %s", data.path, data.n, data.resolution,
         data.resolution, data.n_levels_present)
contact_sheet(data, snakemake.output.png, seed=snakemake.params.seed)
log.info("wrote %s", snakemake.output.png)
