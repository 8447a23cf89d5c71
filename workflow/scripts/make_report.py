"""Snakemake adapter: the self-contained HTML report of one run."""

from latent_abstractions.runtime import rule_logging

with rule_logging(snakemake.log[0], snakemake.rule):
    from latent_abstractions.stages.reporting import make_report

    inp, par = snakemake.input, snakemake.params
    make_report(
        snakemake.output.html,
        figures={key: inp[key] for key in par.figure_keys},
        captions=dict(zip(par.figure_keys, inp.captions)),
        emergence=inp.emergence,
        agreement=inp.agreement,
        exact=inp.exact,
        exact_gaps=inp.exact_gaps,
        classifier_accuracy=inp.classifier,
        sample_scores=dict(zip(par.models, inp.scores)),
        hparams=dict(zip(par.models, inp.hparams)),
        benchmarks=list(inp.benchmarks),
        config=par.config,
        first_threshold=par.first_threshold,
    )
