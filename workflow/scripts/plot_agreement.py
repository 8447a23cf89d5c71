"""Snakemake adapter: the per-factor figure of MI and forking, on the network and on the exact score, against the
exact filter (PDF + PNG)."""

from latent_abstractions.runtime import rule_logging

with rule_logging(snakemake.log[0], snakemake.rule):
    from latent_abstractions.stages.reporting import plot_agreement

    inp = snakemake.input
    plot_agreement(
        inp.mutual_info,
        inp.forking,
        inp.exact,
        inp.exact_gaps,
        snakemake.output.pdf,
        mutual_info_exact=inp.get("mutual_info_exact"),
        forking_exact=inp.get("forking_exact"),
    )
