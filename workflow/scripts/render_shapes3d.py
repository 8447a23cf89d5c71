"""Snakemake adapter: render the synthetic Shapes3D grid."""

from latent_abstractions.runtime import rule_logging

with rule_logging(snakemake.log[0], snakemake.rule):
    from latent_abstractions.stages.dataset import render_shapes3d

    render_shapes3d(snakemake.output.h5, resolution=snakemake.params.resolution, levels=snakemake.params.levels)
