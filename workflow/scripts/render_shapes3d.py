"""Snakemake adapter: render the synthetic Shapes3D grid."""

from latent_abstractions.render import GridSpec
from latent_abstractions.runtime import setup_logging
from latent_abstractions.shapes3d import write_synthetic

log = setup_logging(snakemake.log[0])
spec = GridSpec.from_counts(snakemake.params.resolution, snakemake.params.levels)
log.info("rendering %d images at %dx%d, levels per factor %s", spec.n_images, spec.resolution,
         spec.resolution, spec.shape)
write_synthetic(snakemake.output.h5, spec)
