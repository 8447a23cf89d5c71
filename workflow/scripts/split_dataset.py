"""Snakemake adapter: seeded train/test split of the dataset."""

from latent_abstractions.runtime import rule_logging

with rule_logging(snakemake.log[0], snakemake.rule):
    from latent_abstractions.stages.dataset import split_dataset

    split_dataset(
        snakemake.input.h5,
        snakemake.output.split,
        test_fraction=snakemake.params.test_fraction,
        seed=snakemake.params.seed,
    )
