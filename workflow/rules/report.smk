# Report stage: the paper's figures (each its own target), the emergence table, one self-contained HTML report.
# The measurement figures and the emergence table show the network's curves; the agreement table and figure also
# the MI and forking measured on the exact score (the control that separates measurement from model error).
# Axis convention everywhere: generative time tau, 0 = noise, 1 = data.


rule plot_probes:
    input:
        probes=measured("fit_linear_probes").table,
        exact=rules.compute_exact_filter.output.table,
    output:
        pdf=f"{RESULTS}/figures/probes.pdf",
        png=report(f"{RESULTS}/figures/probes.png", caption="../report/probes.rst", category="Measurements"),
    log:
        f"{LOGS}/plot_probes/plot_probes.log",
    localrule: True
    conda:
        "../../envs/report.yaml"
    threads: 1
    resources:
        mem_mb=2000,
    script:
        "../scripts/plot_probes.py"


rule plot_mutual_info:
    input:
        mutual_info=for_score(measured("estimate_mutual_information").table, "network"),
        exact=rules.compute_exact_filter.output.table,
    output:
        pdf=f"{RESULTS}/figures/mutual_info.pdf",
        png=report(f"{RESULTS}/figures/mutual_info.png", caption="../report/mutual_info.rst", category="Measurements"),
    log:
        f"{LOGS}/plot_mutual_info/plot_mutual_info.log",
    localrule: True
    conda:
        "../../envs/report.yaml"
    threads: 1
    resources:
        mem_mb=2000,
    script:
        "../scripts/plot_mutual_info.py"


rule plot_forking:
    input:
        forking=for_score(measured("run_forking").table, "network"),
        exact=rules.compute_exact_filter.output.table,
    output:
        pdf=f"{RESULTS}/figures/forking.pdf",
        png=report(f"{RESULTS}/figures/forking.png", caption="../report/forking.rst", category="Measurements"),
    log:
        f"{LOGS}/plot_forking/plot_forking.log",
    localrule: True
    conda:
        "../../envs/report.yaml"
    threads: 1
    resources:
        mem_mb=2000,
    script:
        "../scripts/plot_forking.py"


rule plot_samples_forks:
    input:
        samples=f"{RESULTS}/samples/uncond.h5",
        strips=for_score(measured("run_forking").strips, "network"),
    output:
        pdf=f"{RESULTS}/figures/samples_forks.pdf",
        png=report(f"{RESULTS}/figures/samples_forks.png", caption="../report/samples_forks.rst", category="Samples"),
    log:
        f"{LOGS}/plot_samples_forks/plot_samples_forks.log",
    localrule: True
    conda:
        "../../envs/report.yaml"
    threads: 1
    resources:
        mem_mb=2000,
    script:
        "../scripts/plot_samples_forks.py"


rule plot_training_loss:
    input:
        losses=expand(rules.train_score_model.output.loss, model=MODELS),
    output:
        pdf=f"{RESULTS}/figures/training_loss.pdf",
        png=report(f"{RESULTS}/figures/training_loss.png", caption="../report/training_loss.rst", category="Training"),
    log:
        f"{LOGS}/plot_training_loss/plot_training_loss.log",
    localrule: True
    conda:
        "../../envs/report.yaml"
    threads: 1
    resources:
        mem_mb=2000,
    params:
        models=MODELS,
    script:
        "../scripts/plot_training_loss.py"


rule make_emergence_table:
    input:
        unpack(get_exact_score_tables),
        probes=measured("fit_linear_probes").table,
        mutual_info=for_score(measured("estimate_mutual_information").table, "network"),
        forking=for_score(measured("run_forking").table, "network"),
        exact=rules.compute_exact_filter.output.table,
    output:
        table=f"{RESULTS}/tables/emergence.parquet",
        agreement=f"{RESULTS}/tables/emergence_agreement.parquet",
        exact_gaps=f"{RESULTS}/tables/agreement.parquet",
    log:
        f"{LOGS}/make_emergence_table/make_emergence_table.log",
    localrule: True
    conda:
        "../../envs/report.yaml"
    threads: 1
    resources:
        mem_mb=2000,
    params:
        layer=lookup(dpath="features/layers/0", within=config),
        thresholds=cfg("report/thresholds"),
        n_bootstrap=cfg("report/n_bootstrap"),
        seed=cfg("seed"),
    script:
        "../scripts/make_emergence_table.py"


rule plot_agreement:
    input:
        unpack(get_exact_score_tables),
        mutual_info=for_score(measured("estimate_mutual_information").table, "network"),
        forking=for_score(measured("run_forking").table, "network"),
        exact=rules.compute_exact_filter.output.table,
        exact_gaps=rules.make_emergence_table.output.exact_gaps,
    output:
        pdf=f"{RESULTS}/figures/agreement.pdf",
        png=report(
            f"{RESULTS}/figures/agreement.png", caption="../report/agreement_figure.rst", category="Measurements"
        ),
    log:
        f"{LOGS}/plot_agreement/plot_agreement.log",
    localrule: True
    conda:
        "../../envs/report.yaml"
    threads: 1
    resources:
        mem_mb=2000,
    script:
        "../scripts/plot_agreement.py"


rule make_report:
    input:
        probes=rules.plot_probes.output.png,
        mutual_info=rules.plot_mutual_info.output.png,
        forking=rules.plot_forking.output.png,
        agreement_figure=rules.plot_agreement.output.png,
        samples_forks=rules.plot_samples_forks.output.png,
        training_loss=rules.plot_training_loss.output.png,
        emergence=rules.make_emergence_table.output.table,
        agreement=rules.make_emergence_table.output.agreement,
        exact=rules.compute_exact_filter.output.table,
        exact_gaps=rules.make_emergence_table.output.exact_gaps,
        classifier=rules.train_classifier.output.accuracy,
        scores=expand(rules.sample_images.output.scores, model=MODELS),
        hparams=expand(rules.train_score_model.output.hparams, model=MODELS),
        benchmarks=get_benchmarks(),
        captions=get_captions(),
    output:
        html=f"{RESULTS}/report/report.html",
    log:
        f"{LOGS}/make_report/make_report.log",
    localrule: True
    conda:
        "../../envs/report.yaml"
    threads: 1
    resources:
        mem_mb=2000,
    params:
        models=MODELS,
        figure_keys=REPORT_FIGURES,
        first_threshold=lookup(dpath="report/thresholds/0", within=config),
        # the report shows the resolved configuration, so it depends on all of it
        config=config,
    script:
        "../scripts/make_report.py"
