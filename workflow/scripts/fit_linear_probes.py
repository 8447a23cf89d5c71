"""Snakemake adapter: linear probes per tau, layer and factor."""

from latent_abstractions.runtime import rule_logging

with rule_logging(snakemake.log[0], snakemake.rule):
    from latent_abstractions.stages.linear_probes import fit_linear_probes

    par = snakemake.params
    fit_linear_probes(
        snakemake.input.features,
        snakemake.output.table,
        C=par.C,
        max_iter=par.max_iter,
        n_bootstrap=par.n_bootstrap,
        seed=par.seed,
        n_jobs=snakemake.threads,
        shard=par.shard,
    )
