"""Snakemake adapter: the samples and fork strips figure (PDF + PNG)."""

from latent_abstractions.runtime import rule_logging

with rule_logging(snakemake.log[0], snakemake.rule):
    from latent_abstractions.stages.reporting import plot_samples_forks

    plot_samples_forks(snakemake.input.samples, snakemake.input.strips, snakemake.output.pdf)
