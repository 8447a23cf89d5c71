"""Snakemake adapter: the training-loss figure of the score models (PDF + PNG)."""

from latent_abstractions.runtime import rule_logging

with rule_logging(snakemake.log[0], snakemake.rule):
    from latent_abstractions.stages.reporting import plot_training_loss

    plot_training_loss(dict(zip(snakemake.params.models, snakemake.input.losses)), snakemake.output.pdf)
