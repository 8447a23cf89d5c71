"""Snakemake adapter: I(Y_tau; factor) from the conditional score network or the exact score ({score})."""

from latent_abstractions.runtime import rule_logging, select_device

with rule_logging(snakemake.log[0], snakemake.rule):
    from latent_abstractions.stages.measurements import estimate_mutual_information

    inp, par = snakemake.input, snakemake.params
    estimate_mutual_information(
        inp.get("model"),  # none for the exact score
        inp.hparams,
        inp.h5,
        inp.split,
        snakemake.output.table,
        score=par.score,
        taus=par.taus,
        n_images=par.n_images,
        n_times=par.n_times,
        batch_size=par.batch_size,
        estimator=par.estimator,
        seed=par.seed,
        device_memory_gb=snakemake.config["device_memory_gb"],  # execution setting: no rerun when it changes
        shard=par.shard,
        device=select_device(snakemake.resources.get("gpu", 0), snakemake.threads),
    )
