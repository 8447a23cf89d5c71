"""Snakemake adapter: per-tau pooled features of the unconditional score network."""

from pathlib import Path

import numpy as np

from latent_abstractions.features import extract_features
from latent_abstractions.runtime import select_device, setup_logging

setup_logging(snakemake.log[0])
device = select_device(snakemake.resources.get("gpu", 0), snakemake.threads)
cfg = snakemake.params.cfg
extract_features(Path(snakemake.input.model).parent, snakemake.input.h5, snakemake.input.split,
                 snakemake.output.features, taus=np.asarray(snakemake.params.taus), layers=cfg["layers"],
                 pooling=cfg["pooling"], grid=cfg["grid"], n_train=cfg["n_train"], n_test=cfg["n_test"],
                 batch_size=cfg["batch_size"], seed=snakemake.params.seed, device=device)
