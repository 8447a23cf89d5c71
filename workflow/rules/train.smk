# Training stage: the unconditional and conditional NCSN++ score models, and the attribute classifier.
# Resumable state lives in results/<run>/state/<model>/ (not an output: it survives a killed job).


wildcard_constraints:
    model="uncond|cond",


rule train_score_model:
    input:
        h5=get_dataset(),
        split=rules.split_dataset.output.split,
    output:
        model=f"{RESULTS}/models/{{model}}/model.pt",
        hparams=f"{RESULTS}/models/{{model}}/hparams.json",
        loss=f"{RESULTS}/models/{{model}}/loss.parquet",
    log:
        f"{LOGS}/train_score_model/{{model}}.log",
    benchmark:
        f"{BENCH}/train_score_model/{{model}}.tsv"
    params:
        net=config["score_model"],
        sde=config["sde"],
        training=config["training"],
        seed=config["seed"],
        state_dir=f"{RESULTS}/state/{{model}}",
    threads: 1  # one per job: the two score models (uncond, cond) run side by side on 2 cores
    resources:
        gpu=GPUS,
        mem_mb=8000,
        runtime=240,
    conda:
        "../../envs/torch.yaml"
    script:
        "../scripts/train_score_model.py"


rule train_classifier:
    input:
        h5=get_dataset(),
        split=rules.split_dataset.output.split,
    output:
        model=f"{RESULTS}/models/classifier/model.pt",
        hparams=f"{RESULTS}/models/classifier/hparams.json",
        accuracy=f"{RESULTS}/tables/classifier_accuracy.parquet",
    log:
        f"{LOGS}/train_classifier/train_classifier.log",
    benchmark:
        f"{BENCH}/train_classifier/train_classifier.tsv"
    params:
        cfg=config["classifier"],
        seed=config["seed"],
    threads: 2
    resources:
        gpu=GPUS,
        mem_mb=8000,
        runtime=60,
    conda:
        "../../envs/torch.yaml"
    script:
        "../scripts/train_classifier.py"


register_final(rules.train_classifier.output.accuracy)
