"""Snakemake adapter: forking entropy per tau and factor, and fork strips for the report."""

from pathlib import Path

import numpy as np

from latent_abstractions.forking import run_forking
from latent_abstractions.runtime import select_device, setup_logging

setup_logging(snakemake.log[0])
device = select_device(snakemake.resources.get("gpu", 0), snakemake.threads)
cfg, smp = snakemake.params.cfg, snakemake.params.sampling
run_forking(Path(snakemake.input.model).parent, Path(snakemake.input.classifier).parent, snakemake.output.table,
            snakemake.output.strips, taus=np.asarray(snakemake.params.taus), n_base=cfg["n_base"],
            n_forks=cfg["n_forks"], steps=cfg["steps"], method=smp["method"], snr=smp["snr"],
            strip_taus=cfg["strip_taus"], seed=snakemake.params.seed, device=device, corrector=cfg["corrector"])
