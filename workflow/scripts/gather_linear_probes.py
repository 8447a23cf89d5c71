"""Snakemake adapter: the probes table from its tau shards' parts."""

from latent_abstractions.runtime import rule_logging

with rule_logging(snakemake.log[0], snakemake.rule):
    from latent_abstractions.stages.linear_probes import gather_linear_probes

    gather_linear_probes(list(snakemake.input.parts), snakemake.output.table)
