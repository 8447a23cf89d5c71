"""Snakemake adapter: forking entropy per tau and factor, and fork strips, on the network or the exact score."""

from latent_abstractions.runtime import rule_logging, select_device

with rule_logging(snakemake.log[0], snakemake.rule):
    from latent_abstractions.stages.measurements import run_forking

    inp, out, par = snakemake.input, snakemake.output, snakemake.params
    run_forking(
        inp.get("model"),  # none for the exact score, which reads the dataset instead
        inp.hparams,
        inp.classifier,
        inp.classifier_hparams,
        out.table,
        out.strips,
        score=par.score,
        h5=inp.get("h5"),
        taus=par.taus,
        n_base=par.n_base,
        n_forks=par.n_forks,
        steps=par.steps,
        method=par.method,
        snr=par.snr,
        corrector=par.corrector,
        strip_taus=par.strip_taus,
        seed=par.seed,
        partial_dir=par.partial_dir,
        batch_size=par.batch_size,
        device_memory_gb=snakemake.config["device_memory_gb"],  # execution setting: no rerun when it changes
        shard=par.shard,
        device=select_device(snakemake.resources.get("gpu", 0), snakemake.threads),
    )
