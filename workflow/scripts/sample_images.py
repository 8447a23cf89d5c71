"""Snakemake adapter: sample a score model, draw the grid, score the samples with the classifier."""

from pathlib import Path

from latent_abstractions.generate import sample_and_score
from latent_abstractions.runtime import select_device, setup_logging

setup_logging(snakemake.log[0])
device = select_device(snakemake.resources.get("gpu", 0), snakemake.threads)
cfg = snakemake.params.cfg
sample_and_score(Path(snakemake.input.model).parent, Path(snakemake.input.classifier).parent, snakemake.output.h5,
                 snakemake.output.grid, snakemake.output.scores, n=cfg["n_samples"], steps=cfg["steps"],
                 method=cfg["method"], snr=cfg["snr"], batch_size=cfg["batch_size"], seed=snakemake.params.seed,
                 device=device, dataset_h5=snakemake.input.h5, split_path=snakemake.input.split,
                 n_corrector=1 if cfg["corrector"] else 0)
