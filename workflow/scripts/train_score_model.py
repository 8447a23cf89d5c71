"""Snakemake adapter: train one score model (resumes from its state directory)."""

from latent_abstractions.runtime import rule_logging, select_device

with rule_logging(snakemake.log[0], snakemake.rule):
    from latent_abstractions.stages.train import train_score_model

    inp, out, par = snakemake.input, snakemake.output, snakemake.params
    train_score_model(
        inp.h5,
        inp.split,
        out.model,
        out.hparams,
        out.loss,
        model=snakemake.wildcards.model,
        net=par.net,
        label_dropout=par.label_dropout,
        sigma_min=par.sigma_min,
        sigma_max=par.sigma_max,
        training=par.training,
        seed=par.seed,
        state_dir=par.state_dir,
        device=select_device(snakemake.resources.get("gpu", 0), snakemake.threads, training=True),
    )
