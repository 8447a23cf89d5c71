"""Snakemake adapter: download the official 3dshapes.h5 (resumable, validated)."""

from latent_abstractions.runtime import rule_logging

with rule_logging(snakemake.log[0], snakemake.rule):
    from latent_abstractions.stages.dataset import download_shapes3d

    download_shapes3d(snakemake.output.h5, url=snakemake.params.url, sha256=snakemake.params.sha256)
