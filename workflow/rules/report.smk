# Report stage: the paper's figures (each its own target), the emergence table, one self-contained HTML report.
# Axis convention everywhere: generative time tau, 0 = noise, 1 = data.


rule plot_probes:
    input:
        probes=rules.fit_linear_probes.output.table,
        exact=rules.exact_filter.output.table,
    output:
        pdf=f"{RESULTS}/figures/probes.pdf",
        png=report(f"{RESULTS}/figures/probes.png", caption="../report/probes.rst", category="Measurements"),
    log:
        f"{LOGS}/plot_probes/plot_probes.log",
    params:
        figure="probes",
    threads: 1
    resources:
        mem_mb=2000,
    conda:
        "../../envs/report.yaml"
    script:
        "../scripts/plot_figure.py"


rule plot_mutual_info:
    input:
        mutual_info=rules.estimate_mutual_information.output.table,
        exact=rules.exact_filter.output.table,
    output:
        pdf=f"{RESULTS}/figures/mutual_info.pdf",
        png=report(
            f"{RESULTS}/figures/mutual_info.png", caption="../report/mutual_info.rst", category="Measurements"
        ),
    log:
        f"{LOGS}/plot_mutual_info/plot_mutual_info.log",
    params:
        figure="mutual_info",
    threads: 1
    resources:
        mem_mb=2000,
    conda:
        "../../envs/report.yaml"
    script:
        "../scripts/plot_figure.py"


rule plot_forking:
    input:
        forking=rules.run_forking.output.table,
        exact=rules.exact_filter.output.table,
    output:
        pdf=f"{RESULTS}/figures/forking.pdf",
        png=report(f"{RESULTS}/figures/forking.png", caption="../report/forking.rst", category="Measurements"),
    log:
        f"{LOGS}/plot_forking/plot_forking.log",
    params:
        figure="forking",
    threads: 1
    resources:
        mem_mb=2000,
    conda:
        "../../envs/report.yaml"
    script:
        "../scripts/plot_figure.py"


rule plot_samples_forks:
    input:
        samples=f"{RESULTS}/samples/uncond.h5",
        strips=rules.run_forking.output.strips,
    output:
        pdf=f"{RESULTS}/figures/samples_forks.pdf",
        png=report(
            f"{RESULTS}/figures/samples_forks.png", caption="../report/samples_forks.rst", category="Samples"
        ),
    log:
        f"{LOGS}/plot_samples_forks/plot_samples_forks.log",
    params:
        figure="samples_forks",
    threads: 1
    resources:
        mem_mb=2000,
    conda:
        "../../envs/report.yaml"
    script:
        "../scripts/plot_figure.py"


rule plot_training_loss:
    input:
        uncond=f"{RESULTS}/models/uncond/loss.parquet",
        cond=f"{RESULTS}/models/cond/loss.parquet",
    output:
        pdf=f"{RESULTS}/figures/training_loss.pdf",
        png=report(f"{RESULTS}/figures/training_loss.png", caption="../report/training_loss.rst", category="Training"),
    log:
        f"{LOGS}/plot_training_loss/plot_training_loss.log",
    params:
        figure="training_loss",
    threads: 1
    resources:
        mem_mb=2000,
    conda:
        "../../envs/report.yaml"
    script:
        "../scripts/plot_figure.py"


rule make_emergence_table:
    input:
        probes=rules.fit_linear_probes.output.table,
        mutual_info=rules.estimate_mutual_information.output.table,
        forking=rules.run_forking.output.table,
        exact=rules.exact_filter.output.table,
    output:
        table=f"{RESULTS}/tables/emergence.parquet",
        agreement=f"{RESULTS}/tables/emergence_agreement.parquet",
        exact_gaps=f"{RESULTS}/tables/agreement.parquet",
    log:
        f"{LOGS}/make_emergence_table/make_emergence_table.log",
    params:
        cfg=config["report"],
        layer=config["features"]["layers"][0],
        seed=config["seed"],
    threads: 1
    resources:
        mem_mb=2000,
    conda:
        "../../envs/report.yaml"
    script:
        "../scripts/make_emergence_table.py"


rule make_report:
    input:
        probes=rules.plot_probes.output.png,
        mutual_info=rules.plot_mutual_info.output.png,
        forking=rules.plot_forking.output.png,
        samples_forks=rules.plot_samples_forks.output.png,
        training_loss=rules.plot_training_loss.output.png,
        emergence=rules.make_emergence_table.output.table,
        agreement=rules.make_emergence_table.output.agreement,
        exact=rules.exact_filter.output.table,
        exact_gaps=rules.make_emergence_table.output.exact_gaps,
        classifier=rules.train_classifier.output.accuracy,
        scores=expand(rules.sample_images.output.scores, model=["uncond", "cond"]),
        hparams=expand(rules.train_score_model.output.hparams, model=["uncond", "cond"]),
    output:
        html=f"{RESULTS}/report/report.html",
    log:
        f"{LOGS}/make_report/make_report.log",
    params:
        config=config,
        bench_dir=BENCH,
        captions_dir=os.path.join(workflow.basedir, "workflow", "report"),
        first_threshold=config["report"]["thresholds"][0],
    threads: 1
    resources:
        mem_mb=2000,
    conda:
        "../../envs/report.yaml"
    script:
        "../scripts/make_report.py"


register_final(
    rules.make_report.output.html,
    rules.plot_probes.output.pdf,
    rules.plot_mutual_info.output.pdf,
    rules.plot_forking.output.pdf,
    rules.plot_samples_forks.output.pdf,
    rules.plot_training_loss.output.pdf,
)
