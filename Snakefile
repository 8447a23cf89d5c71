# Latent abstractions in generative diffusion models: the reproduction workflow.
#
# Table of contents. Each stage lives in workflow/rules/<stage>.smk; the helpers, paths and config
# validation in workflow/rules/common.smk. Time convention everywhere: tau is generative time in [0, 1]
# (0 = pure noise, 1 = data); the forward SDE runs in t = 1 - tau.
#
#   snakemake --cores all                           # the whole default (CPU-sized) workflow
#   snakemake --cores all --configfile config/gpu.yaml
#   snakemake -n                                    # dry run: show the DAG
#   snakemake results/default/figures/probes.pdf    # rebuild one figure and only what it needs

from snakemake.utils import min_version

min_version("9.0")


configfile: "config/config.yaml"


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/sample.smk"
include: "workflow/rules/measure.smk"
include: "workflow/rules/exact.smk"
include: "workflow/rules/report.smk"


rule all:
    default_target: True
    input:
        get_final_outputs(),
    localrule: True
