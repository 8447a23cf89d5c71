"""Snakemake adapter: the per-factor figure of MI and forking against the exact filter (PDF + PNG)."""

from latent_abstractions.runtime import rule_logging

with rule_logging(snakemake.log[0], snakemake.rule):
    from latent_abstractions.stages.reporting import plot_agreement

    inp = snakemake.input
    plot_agreement(inp.mutual_info, inp.forking, inp.exact, inp.exact_gaps, snakemake.output.pdf)
