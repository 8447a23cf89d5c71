"""Snakemake adapter: the forking figure (PDF + PNG)."""

from latent_abstractions.runtime import rule_logging

with rule_logging(snakemake.log[0], snakemake.rule):
    from latent_abstractions.stages.reporting import plot_forking

    plot_forking(snakemake.input.forking, snakemake.input.exact, snakemake.output.pdf)
