"""Snakemake adapter: the forking table and strips ({score}) from its tau shards' fork labels and strips."""

from latent_abstractions.runtime import rule_logging

with rule_logging(snakemake.log[0], snakemake.rule):
    from latent_abstractions.stages.measurements import gather_forking

    out = snakemake.output
    gather_forking(list(snakemake.input.parts), list(snakemake.input.strips), out.table, out.strips)
