"""Snakemake adapter: train one score model (resumes from its state directory)."""

from pathlib import Path

from latent_abstractions.runtime import select_device, setup_logging
from latent_abstractions.train import run_training

setup_logging(snakemake.log[0])
device = select_device(snakemake.resources.get("gpu", 0), snakemake.threads)
run_training(snakemake.input.h5, snakemake.input.split, snakemake.wildcards.model, snakemake.params.net,
             snakemake.params.sde, snakemake.params.training, snakemake.params.seed, snakemake.params.state_dir,
             Path(snakemake.output.model).parent, snakemake.output.loss, device)
