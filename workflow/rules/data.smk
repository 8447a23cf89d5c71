# Dataset stage: the Shapes3D file (rendered, downloaded or the user's), the train/test split, a contact sheet.


rule render_shapes3d:
    output:
        h5=f"{RESULTS}/data/shapes3d.h5",
    log:
        f"{LOGS}/render_shapes3d/render_shapes3d.log",
    benchmark:
        f"{BENCH}/render_shapes3d/render_shapes3d.tsv"
    conda:
        "../../envs/torch.yaml"
    threads: 1
    resources:
        mem_mb=get_mem_mb("render_shapes3d"),
        runtime=get_runtime("render_shapes3d"),
    params:
        resolution=cfg("dataset/synthetic/resolution"),
        levels=get_level_counts(),
    script:
        "../scripts/render_shapes3d.py"


# Local: compute nodes often have no internet access.
rule download_shapes3d:
    output:
        h5="resources/shapes3d/3dshapes.h5",
    log:
        f"{LOGS}/download_shapes3d/download_shapes3d.log",
    localrule: True
    conda:
        "../../envs/torch.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=120,
    params:
        url=cfg("dataset/url"),
        sha256=cfg("dataset/sha256"),
    script:
        "../scripts/download_shapes3d.py"


rule split_dataset:
    input:
        h5=get_dataset(),
    output:
        split=f"{RESULTS}/data/split.parquet",
    log:
        f"{LOGS}/split_dataset/split_dataset.log",
    localrule: True
    conda:
        "../../envs/torch.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        test_fraction=cfg("dataset/test_fraction"),
        seed=cfg("seed"),
    script:
        "../scripts/split_dataset.py"


rule plot_contact_sheet:
    input:
        h5=get_dataset(),
    output:
        png=report(
            f"{RESULTS}/figures/contact_sheet.png",
            caption="../report/contact_sheet.rst",
            category="Data",
        ),
    log:
        f"{LOGS}/plot_contact_sheet/plot_contact_sheet.log",
    localrule: True
    conda:
        "../../envs/torch.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        seed=cfg("seed"),
    script:
        "../scripts/plot_contact_sheet.py"
