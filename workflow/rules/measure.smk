# Measurement stage: the paper's three measurements on one shared tau grid
# (generative time: 0 = noise, 1 = data): linear probes, mutual information, forking entropy.


rule extract_features:
    input:
        model=model_file("uncond", "model.pt"),
        hparams=model_file("uncond", "hparams.json"),
        h5=get_dataset(),
        split=rules.split_dataset.output.split,
    output:
        features=f"{RESULTS}/features/features.parquet",
    log:
        f"{LOGS}/extract_features/extract_features.log",
    benchmark:
        f"{BENCH}/extract_features/extract_features.tsv"
    params:
        cfg=config["features"],
        taus=get_taus(),
        seed=config["seed"],
    threads: 2
    resources:
        gpu=GPUS,
        mem_mb=8000,
        runtime=60,
    conda:
        "../../envs/torch.yaml"
    script:
        "../scripts/extract_features.py"


rule fit_linear_probes:
    input:
        features=rules.extract_features.output.features,
    output:
        table=f"{RESULTS}/tables/probes.parquet",
    log:
        f"{LOGS}/fit_linear_probes/fit_linear_probes.log",
    benchmark:
        f"{BENCH}/fit_linear_probes/fit_linear_probes.tsv"
    params:
        cfg=config["probes"],
        seed=config["seed"],
    threads: 2
    resources:
        mem_mb=4000,
        runtime=60,
    conda:
        "../../envs/analysis.yaml"
    script:
        "../scripts/fit_linear_probes.py"


rule estimate_mutual_information:
    input:
        model=model_file("cond", "model.pt"),
        hparams=model_file("cond", "hparams.json"),
        h5=get_dataset(),
        split=rules.split_dataset.output.split,
    output:
        table=f"{RESULTS}/tables/mutual_info.parquet",
    log:
        f"{LOGS}/estimate_mutual_information/estimate_mutual_information.log",
    benchmark:
        f"{BENCH}/estimate_mutual_information/estimate_mutual_information.tsv"
    params:
        cfg=config["mutual_info"],
        taus=get_taus(),
        seed=config["seed"],
    threads: 2
    resources:
        gpu=GPUS,
        mem_mb=8000,
        runtime=120,
    conda:
        "../../envs/torch.yaml"
    script:
        "../scripts/estimate_mutual_information.py"


rule run_forking:
    input:
        model=model_file("uncond", "model.pt"),
        hparams=model_file("uncond", "hparams.json"),
        classifier=rules.train_classifier.output.model,
    output:
        table=f"{RESULTS}/tables/forking.parquet",
        strips=f"{RESULTS}/forking/strips.h5",
    log:
        f"{LOGS}/run_forking/run_forking.log",
    benchmark:
        f"{BENCH}/run_forking/run_forking.tsv"
    params:
        cfg=config["forking"],
        sampling=config["sampling"],
        taus=get_taus(),
        seed=config["seed"],
    threads: 2
    resources:
        gpu=GPUS,
        mem_mb=8000,
        runtime=120,
    conda:
        "../../envs/torch.yaml"
    script:
        "../scripts/run_forking.py"


register_final(
    rules.fit_linear_probes.output.table,
    rules.estimate_mutual_information.output.table,
    rules.run_forking.output.table,
    rules.run_forking.output.strips,
)
