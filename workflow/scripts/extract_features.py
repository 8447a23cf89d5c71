"""Snakemake adapter: per-tau pooled features of the unconditional score network."""

from latent_abstractions.runtime import rule_logging, select_device

with rule_logging(snakemake.log[0], snakemake.rule):
    from latent_abstractions.stages.measurements import extract_features

    inp, par = snakemake.input, snakemake.params
    extract_features(
        inp.model,
        inp.hparams,
        inp.h5,
        inp.split,
        snakemake.output.features,
        taus=par.taus,
        layers=par.layers,
        pooling=par.pooling,
        grid=par.grid,
        n_train=par.n_train,
        n_test=par.n_test,
        batch_size=par.batch_size,
        seed=par.seed,
        device_memory_gb=snakemake.config["device_memory_gb"],  # execution setting: no rerun when it changes
        shard=par.shard,
        device=select_device(snakemake.resources.get("gpu", 0), snakemake.threads),
    )
