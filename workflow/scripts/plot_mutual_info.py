"""Snakemake adapter: the mutual_info figure (PDF + PNG)."""

from latent_abstractions.runtime import rule_logging

with rule_logging(snakemake.log[0], snakemake.rule):
    from latent_abstractions.stages.reporting import plot_mutual_info

    plot_mutual_info(snakemake.input.mutual_info, snakemake.input.exact, snakemake.output.pdf)
