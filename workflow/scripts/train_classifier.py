"""Snakemake adapter: train the attribute classifier and report its held-out accuracy."""

from pathlib import Path

from latent_abstractions.classifier import run_classifier_training
from latent_abstractions.runtime import select_device, setup_logging

setup_logging(snakemake.log[0])
device = select_device(snakemake.resources.get("gpu", 0), snakemake.threads)
cfg = snakemake.params.cfg
run_classifier_training(snakemake.input.h5, snakemake.input.split, width=cfg["width"], steps=cfg["steps"],
                        batch_size=cfg["batch_size"], lr=cfg["lr"], seed=snakemake.params.seed,
                        model_dir=Path(snakemake.output.model).parent, table_out=snakemake.output.accuracy,
                        device=device)
