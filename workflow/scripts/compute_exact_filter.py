"""Snakemake adapter: the exact filter's ground-truth curves (MI, Bayes accuracy, forking entropy)."""

from latent_abstractions.runtime import rule_logging, select_device

with rule_logging(snakemake.log[0], snakemake.rule):
    from latent_abstractions.stages.exact import compute_exact_filter

    inp, out, par = snakemake.input, snakemake.output, snakemake.params
    compute_exact_filter(
        inp.h5,
        inp.split,
        inp.hparams,
        out.table,
        taus=par.taus,
        n_samples=par.n_samples,
        n_forks=par.n_forks,
        n_base=par.n_base,
        mixtures=par.mixtures,
        chunk_size=par.chunk_size,
        seed=par.seed,
        device=select_device(snakemake.resources.get("gpu", 0), snakemake.threads),
    )
