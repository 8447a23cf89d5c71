# Measurement stage: the paper's three measurements on one shared tau grid
# (generative time: 0 = noise, 1 = data): linear probes, mutual information, forking entropy.
# With tau_shards > 1 each per-tau rule runs once per contiguous part of the grid ({shard}) and writes a part; its
# gather_* rule (defined only then) writes the final files, the same bytes as one job's (see TAU_SHARDS).


rule extract_features:
    input:
        model=model_file("uncond", "model.pt"),
        hparams=model_file("uncond", "hparams.json"),
        h5=get_dataset(),
        split=rules.split_dataset.output.split,
    output:
        # the shards' tables are big (the whole table again) and read once, by the gather
        features=sharded(
            f"{RESULTS}/features/features.parquet", temp(f"{RESULTS}/shards/features/features.{{shard}}.parquet")
        ),
    log:
        shard_log(f"{LOGS}/extract_features/extract_features.log"),
    benchmark:
        shard_log(f"{BENCH}/extract_features/extract_features.tsv")
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
        shard=get_shard,
    script:
        "../scripts/extract_features.py"


if TAU_SHARDS > 1:

    rule gather_features:
        input:
            parts=expand(rules.extract_features.output.features, shard=SHARDS),
        output:
            features=f"{RESULTS}/features/features.parquet",
        log:
            f"{LOGS}/gather_features/gather_features.log",
        localrule: True
        conda:
            "../../envs/analysis.yaml"
        script:
            "../scripts/gather_features.py"


rule fit_linear_probes:
    input:
        features=measured("extract_features").features,
    output:
        table=sharded(f"{RESULTS}/tables/probes.parquet", f"{RESULTS}/shards/probes/probes.{{shard}}.npz"),
    log:
        shard_log(f"{LOGS}/fit_linear_probes/fit_linear_probes.log"),
    benchmark:
        shard_log(f"{BENCH}/fit_linear_probes/fit_linear_probes.tsv")
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
        shard=get_shard,
    script:
        "../scripts/fit_linear_probes.py"


if TAU_SHARDS > 1:

    rule gather_linear_probes:
        input:
            parts=expand(rules.fit_linear_probes.output.table, shard=SHARDS),
        output:
            table=f"{RESULTS}/tables/probes.parquet",
        log:
            f"{LOGS}/gather_linear_probes/gather_linear_probes.log",
        localrule: True
        conda:
            "../../envs/analysis.yaml"
        script:
            "../scripts/gather_linear_probes.py"


rule estimate_mutual_information:
    input:
        unpack(get_score_inputs("cond")),
        h5=get_dataset(),
        split=rules.split_dataset.output.split,
    output:
        table=sharded(
            f"{RESULTS}/tables/mutual_info{{score}}.parquet",
            f"{RESULTS}/shards/mutual_info/mutual_info{{score}}.{{shard}}.npz",
        ),
    log:
        shard_log(f"{LOGS}/estimate_mutual_information/estimate_mutual_information{{score}}.log"),
    benchmark:
        shard_log(f"{BENCH}/estimate_mutual_information/estimate_mutual_information{{score}}.tsv")
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
        shard=get_shard,
    script:
        "../scripts/estimate_mutual_information.py"


if TAU_SHARDS > 1:

    rule gather_mutual_information:
        input:
            parts=expand(rules.estimate_mutual_information.output.table, shard=SHARDS, allow_missing=True),
        output:
            table=f"{RESULTS}/tables/mutual_info{{score}}.parquet",
        log:
            f"{LOGS}/gather_mutual_information/gather_mutual_information{{score}}.log",
        localrule: True
        conda:
            "../../envs/torch.yaml"
        script:
            "../scripts/gather_mutual_information.py"


rule run_forking:
    input:
        unpack(get_score_inputs("uncond", dataset=True)),
        classifier=rules.train_classifier.output.model,
        classifier_hparams=rules.train_classifier.output.hparams,
    output:
        table=sharded(
            f"{RESULTS}/tables/forking{{score}}.parquet", f"{RESULTS}/shards/forking/forking{{score}}.{{shard}}.npz"
        ),
        strips=sharded(
            f"{RESULTS}/forking/strips{{score}}.h5", f"{RESULTS}/shards/forking/strips{{score}}.{{shard}}.h5"
        ),
    log:
        shard_log(f"{LOGS}/run_forking/run_forking{{score}}.log"),
    benchmark:
        shard_log(f"{BENCH}/run_forking/run_forking{{score}}.tsv")
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
        # each tau's results as it is done (not an output: survives a killed job, which resumes from it); one
        # directory for all shards (one file per tau)
        partial_dir=f"{RESULTS}/state/forking{{score}}",
        shard=get_shard,
    script:
        "../scripts/run_forking.py"


if TAU_SHARDS > 1:

    rule gather_forking:
        input:
            parts=expand(rules.run_forking.output.table, shard=SHARDS, allow_missing=True),
            strips=expand(rules.run_forking.output.strips, shard=SHARDS, allow_missing=True),
        output:
            table=f"{RESULTS}/tables/forking{{score}}.parquet",
            strips=f"{RESULTS}/forking/strips{{score}}.h5",
        log:
            f"{LOGS}/gather_forking/gather_forking{{score}}.log",
        localrule: True
        conda:
            "../../envs/torch.yaml"
        script:
            "../scripts/gather_forking.py"
