"""Snakemake adapter: train the attribute classifier and report its held-out accuracy."""

from latent_abstractions.runtime import rule_logging, select_device

with rule_logging(snakemake.log[0], snakemake.rule):
    from latent_abstractions.stages.train import train_classifier

    inp, out, par = snakemake.input, snakemake.output, snakemake.params
    train_classifier(
        inp.h5,
        inp.split,
        out.model,
        out.hparams,
        out.accuracy,
        width=par.width,
        steps=par.steps,
        batch_size=par.batch_size,
        lr=par.lr,
        seed=par.seed,
        device=select_device(snakemake.resources.get("gpu", 0), snakemake.threads, training=True),
    )
