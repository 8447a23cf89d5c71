"""Snakemake adapter: the features table from its tau shards' tables."""

from latent_abstractions.runtime import rule_logging

with rule_logging(snakemake.log[0], snakemake.rule):
    from latent_abstractions.stages.feature_table import gather_feature_tables

    gather_feature_tables(list(snakemake.input.parts), snakemake.output.features)
