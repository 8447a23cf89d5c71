"""Snakemake adapter: the probes figure (PDF + PNG)."""

from latent_abstractions.runtime import rule_logging

with rule_logging(snakemake.log[0], snakemake.rule):
    from latent_abstractions.stages.reporting import plot_probes

    plot_probes(snakemake.input.probes, snakemake.input.exact, snakemake.output.pdf)
