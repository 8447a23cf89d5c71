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
    conda:
        "../../envs/torch.yaml"
    threads: THREADS
    resources:
        gpu=GPUS,
        mem_mb=get_mem_mb("extract_features"),
        runtime=get_runtime("extract_features"),
    params:
        taus=get_taus(),
        layers=cfg("features/layers"),
        pooling=cfg("features/pooling"),
        grid=cfg("features/grid"),
        n_train=cfg("features/n_train"),
        n_test=cfg("features/n_test"),
        batch_size=cfg("features/batch_size"),
        seed=cfg("seed"),
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
    conda:
        "../../envs/analysis.yaml"
    threads: THREADS
    resources:
        mem_mb=get_mem_mb("fit_linear_probes"),
        runtime=get_runtime("fit_linear_probes"),
    params:
        C=cfg("probes/C"),
        max_iter=cfg("probes/max_iter"),
        n_bootstrap=cfg("probes/n_bootstrap"),
        seed=cfg("seed"),
    script:
        "../scripts/fit_linear_probes.py"


rule estimate_mutual_information:
    input:
        unpack(get_score_inputs("cond")),
        h5=get_dataset(),
        split=rules.split_dataset.output.split,
    output:
        table=f"{RESULTS}/tables/mutual_info{{score}}.parquet",
    log:
        f"{LOGS}/estimate_mutual_information/estimate_mutual_information{{score}}.log",
    benchmark:
        f"{BENCH}/estimate_mutual_information/estimate_mutual_information{{score}}.tsv"
    conda:
        "../../envs/torch.yaml"
    threads: THREADS
    resources:
        gpu=GPUS,
        mem_mb=get_mem_mb("estimate_mutual_information"),
        runtime=get_runtime("estimate_mutual_information"),
    params:
        score=get_score,
        taus=get_taus(),
        n_images=cfg("mutual_info/n_images"),
        n_times=cfg("mutual_info/n_times"),
        estimator=cfg("mutual_info/estimator"),
        batch_size=cfg("mutual_info/batch_size"),
        seed=cfg("seed"),
    script:
        "../scripts/estimate_mutual_information.py"


rule run_forking:
    input:
        unpack(get_score_inputs("uncond", dataset=True)),
        classifier=rules.train_classifier.output.model,
        classifier_hparams=rules.train_classifier.output.hparams,
    output:
        table=f"{RESULTS}/tables/forking{{score}}.parquet",
        strips=f"{RESULTS}/forking/strips{{score}}.h5",
    log:
        f"{LOGS}/run_forking/run_forking{{score}}.log",
    benchmark:
        f"{BENCH}/run_forking/run_forking{{score}}.tsv"
    conda:
        "../../envs/torch.yaml"
    threads: THREADS
    resources:
        gpu=GPUS,
        mem_mb=get_mem_mb("run_forking"),
        runtime=get_runtime("run_forking"),
    params:
        score=get_score,
        taus=get_taus(),
        n_base=cfg("forking/n_base"),
        n_forks=cfg("forking/n_forks"),
        steps=cfg("forking/steps"),
        strip_taus=cfg("forking/strip_taus"),
        corrector=cfg("forking/corrector"),
        method=cfg("sampling/method"),
        snr=cfg("sampling/snr"),
        batch_size=cfg("forking/batch_size"),
        seed=cfg("seed"),
        # each tau's results as it is done (not an output: survives a killed job, which resumes from it)
        partial_dir=f"{RESULTS}/state/forking{{score}}",
    script:
        "../scripts/run_forking.py"
