# Sampling stage: unconditional samples of each score model (tau = 0 -> 1), a grid, classifier scores.


rule sample_images:
    input:
        model=rules.train_score_model.output.model,
        hparams=rules.train_score_model.output.hparams,
        classifier=rules.train_classifier.output.model,
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
    params:
        cfg=config["sampling"],
        seed=config["seed"],
    threads: 1  # one per job: the two score models (uncond, cond) run side by side on 2 cores
    resources:
        gpu=GPUS,
        mem_mb=8000,
        runtime=60,
    conda:
        "../../envs/torch.yaml"
    script:
        "../scripts/sample_images.py"


register_final(
    expand(rules.sample_images.output.grid, model=["uncond", "cond"]),
    expand(rules.sample_images.output.scores, model=["uncond", "cond"]),
)
