"""Snakemake adapter: linear probes per tau, layer and factor."""

from latent_abstractions.probes import fit_linear_probes
from latent_abstractions.runtime import setup_logging

setup_logging(snakemake.log[0])
cfg = snakemake.params.cfg
fit_linear_probes(snakemake.input.features, snakemake.output.table, C=cfg["C"], max_iter=cfg["max_iter"],
                  n_bootstrap=cfg["n_bootstrap"], seed=snakemake.params.seed, n_jobs=snakemake.threads)
