"""Snakemake adapter: contact sheet of dataset images with their labels."""

from latent_abstractions.plotting import contact_sheet
from latent_abstractions.runtime import setup_logging
from latent_abstractions.shapes3d import load_shapes3d

setup_logging(snakemake.log[0])
contact_sheet(load_shapes3d(snakemake.input.h5), snakemake.output.png, seed=snakemake.params.seed)
