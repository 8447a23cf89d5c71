"""Snakemake adapter: the MI table ({score}) from its tau shards' per-image contributions."""

from latent_abstractions.runtime import rule_logging

with rule_logging(snakemake.log[0], snakemake.rule):
    from latent_abstractions.stages.measurements import gather_mutual_information

    gather_mutual_information(list(snakemake.input.parts), snakemake.output.table)
