"""Snakemake adapter: I(Y_tau; factor) from the conditional score network."""

from pathlib import Path

import numpy as np

from latent_abstractions.mutual_info import estimate_mutual_information
from latent_abstractions.runtime import select_device, setup_logging

setup_logging(snakemake.log[0])
device = select_device(snakemake.resources.get("gpu", 0), snakemake.threads)
cfg = snakemake.params.cfg
estimate_mutual_information(Path(snakemake.input.model).parent, snakemake.input.h5, snakemake.input.split,
                            snakemake.output.table, taus=np.asarray(snakemake.params.taus),
                            n_images=cfg["n_images"], n_times=cfg["n_times"], batch_size=cfg["batch_size"],
                            seed=snakemake.params.seed, device=device, estimator=cfg["estimator"])
