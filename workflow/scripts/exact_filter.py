"""Snakemake adapter: the exact filter's ground-truth curves (MI, Bayes accuracy, forking entropy)."""

from latent_abstractions.runtime import select_device, setup_logging
from latent_abstractions.stages.exact_filter import exact_filter

setup_logging(snakemake.log[0])
device = select_device(snakemake.resources.get("gpu", 0), snakemake.threads)
par = snakemake.params
exact_filter(snakemake.input.h5, snakemake.input.split, snakemake.input.hparams, snakemake.output.table,
             taus=par.taus, n_samples=par.n_samples, n_forks=par.n_forks, mixtures=par.mixtures,
             chunk_size=par.chunk_size, seed=par.seed, device=device)
