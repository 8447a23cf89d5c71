"""Snakemake adapter: emergence times of each factor under the three measurements, their agreement, and the
gaps of the network's and the exact score's curves to the exact filter."""

from latent_abstractions.runtime import rule_logging

with rule_logging(snakemake.log[0], snakemake.rule):
    from latent_abstractions.stages.reporting import make_emergence_table

    inp, out, par = snakemake.input, snakemake.output, snakemake.params
    make_emergence_table(
        inp.probes,
        inp.mutual_info,
        inp.forking,
        inp.exact,
        out.table,
        out.agreement,
        out.exact_gaps,
        mutual_info_exact=inp.get("mutual_info_exact"),
        forking_exact=inp.get("forking_exact"),
        layer=par.layer,
        thresholds=par.thresholds,
        n_bootstrap=par.n_bootstrap,
        seed=par.seed,
    )
