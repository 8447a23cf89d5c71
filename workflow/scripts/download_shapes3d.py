"""Snakemake adapter: download the official 3dshapes.h5 (resumable, validated)."""

from latent_abstractions.download import download
from latent_abstractions.runtime import setup_logging

log = setup_logging(snakemake.log[0])
log.info("downloading %s", snakemake.params.url)
download(snakemake.params.url, snakemake.output.h5, sha256=snakemake.params.sha256)
