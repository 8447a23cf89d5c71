# The exact nonlinear filter of the dataset: ground-truth curves for the three measurements (no training
# needed for the maths; the SDE is read from the unconditional model so that the curves share its path).


rule compute_exact_filter:
    input:
        h5=get_dataset(),
        split=rules.split_dataset.output.split,
        hparams=model_file("uncond", "hparams.json"),
    output:
        table=f"{RESULTS}/tables/exact_filter.parquet",
    log:
        f"{LOGS}/compute_exact_filter/compute_exact_filter.log",
    benchmark:
        f"{BENCH}/compute_exact_filter/compute_exact_filter.tsv"
    conda:
        "../../envs/torch.yaml"
    threads: THREADS
    resources:
        gpu=GPUS,
        mem_mb=get_mem_mb("compute_exact_filter"),
        runtime=get_runtime("compute_exact_filter"),
    params:
        n_samples=cfg("exact_filter/n_samples"),
        mixtures=cfg("exact_filter/mixtures"),
        chunk_size=cfg("exact_filter/chunk_size"),
        n_forks=cfg("forking/n_forks"),
        n_base=cfg("forking/n_base"),
        taus=get_taus(),
        seed=cfg("seed"),
    script:
        "../scripts/compute_exact_filter.py"
