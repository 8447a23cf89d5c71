# Sampling stage: unconditional samples of each score model (tau = 0 -> 1), a grid, classifier scores.


rule sample_images:
    input:
        model=rules.train_score_model.output.model,
        hparams=rules.train_score_model.output.hparams,
        classifier=rules.train_classifier.output.model,
        classifier_hparams=rules.train_classifier.output.hparams,
        h5=get_dataset(),
        split=rules.split_dataset.output.split,
    output:
        h5=f"{RESULTS}/samples/{{model}}.h5",
        grid=report(
            f"{RESULTS}/figures/samples_{{model}}.png",
            caption="../report/samples.rst",
            category="Samples",
            labels={"model": "{model}"},
        ),
        scores=f"{RESULTS}/tables/sample_scores_{{model}}.parquet",
    log:
        f"{LOGS}/sample_images/{{model}}.log",
    benchmark:
        f"{BENCH}/sample_images/{{model}}.tsv"
    conda:
        "../../envs/torch.yaml"
    threads: THREADS
    resources:
        gpu=GPUS,
        mem_mb=get_mem_mb("sample_images"),
        runtime=get_runtime("sample_images"),
    params:
        n_samples=cfg("sampling/n_samples"),
        steps=cfg("sampling/steps"),
        method=cfg("sampling/method"),
        snr=cfg("sampling/snr"),
        corrector=cfg("sampling/corrector"),
        batch_size=cfg("sampling/batch_size"),
        seed=cfg("seed"),
    script:
        "../scripts/sample_images.py"
