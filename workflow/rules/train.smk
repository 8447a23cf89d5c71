# Training stage: the unconditional and conditional NCSN++ score models, and the attribute classifier.
# Resumable state lives in results/<run>/state/<model>/ (not an output: it survives a killed job).
# A score model trains on training.gpus GPUs in one job (one process per GPU under torchrun); with
# training.segment_minutes it stops, saves and exits 75 when its budget is spent, and the retries rerun it.


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
    retries: get_training_retries()
    conda:
        "../../envs/torch.yaml"
    threads: THREADS * TRAIN_GPUS
    resources:
        gpu=GPUS * TRAIN_GPUS,
        mem_mb=get_mem_mb("train_score_model"),
        runtime=get_runtime("train_score_model"),
    params:
        net=cfg_keys(
            "score_model", "nf", "ch_mult", "num_res_blocks", "attn_resolutions", "dropout", "fourier_scale", "precond"
        ),
        label_dropout=get_label_dropout,
        sigma_min=cfg("sde/sigma_min"),
        sigma_max=cfg("sde/sigma_max"),
        training=get_training_settings(),
        seed=cfg("seed"),
        state_dir=f"{RESULTS}/state/{{model}}",
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
    conda:
        "../../envs/torch.yaml"
    threads: THREADS
    resources:
        gpu=GPUS,
        mem_mb=get_mem_mb("train_classifier"),
        runtime=get_runtime("train_classifier"),
    params:
        width=cfg("classifier/width"),
        steps=cfg("classifier/steps"),
        batch_size=cfg("classifier/batch_size"),
        lr=cfg("classifier/lr"),
        seed=cfg("seed"),
    script:
        "../scripts/train_classifier.py"
