"""Snakemake adapter: emergence times of each factor under the three measurements, and their agreement."""

import pandas as pd

from latent_abstractions.emergence import emergence_table
from latent_abstractions.io import write_parquet
from latent_abstractions.runtime import setup_logging

log = setup_logging(snakemake.log[0])
probes = pd.read_parquet(snakemake.input.probes)
curves = {"probes": probes[probes["layer"] == snakemake.params.layer],
          "mutual_info": pd.read_parquet(snakemake.input.mutual_info),
          "forking": pd.read_parquet(snakemake.input.forking)}
cfg = snakemake.params.cfg
table, agreement = emergence_table(curves, cfg["thresholds"], cfg["n_bootstrap"], snakemake.params.seed)
log.info("agreement:\n%s", agreement.to_string())
write_parquet(table, snakemake.output.table, {"layer": snakemake.params.layer, **cfg})
write_parquet(agreement, snakemake.output.agreement, {"layer": snakemake.params.layer, **cfg})
