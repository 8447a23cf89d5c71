"""Snakemake adapter: contact sheet of dataset images with their labels."""

from latent_abstractions.runtime import rule_logging

with rule_logging(snakemake.log[0], snakemake.rule):
    from latent_abstractions.stages.dataset import plot_contact_sheet

    plot_contact_sheet(snakemake.input.h5, snakemake.output.png, seed=snakemake.params.seed)
