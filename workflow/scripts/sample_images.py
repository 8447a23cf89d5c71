"""Snakemake adapter: sample a score model, draw the grid, score the samples with the classifier."""

from latent_abstractions.runtime import rule_logging, select_device

with rule_logging(snakemake.log[0], snakemake.rule):
    from latent_abstractions.stages.sample import sample_images

    inp, out, par = snakemake.input, snakemake.output, snakemake.params
    sample_images(
        inp.model,
        inp.hparams,
        inp.classifier,
        inp.classifier_hparams,
        inp.h5,
        inp.split,
        out.h5,
        out.grid,
        out.scores,
        model=snakemake.wildcards.model,
        n_samples=par.n_samples,
        steps=par.steps,
        method=par.method,
        snr=par.snr,
        corrector=par.corrector,
        batch_size=par.batch_size,
        seed=par.seed,
        device_memory_gb=snakemake.config["device_memory_gb"],  # execution setting: no rerun when it changes
        device=select_device(snakemake.resources.get("gpu", 0), snakemake.threads),
    )
