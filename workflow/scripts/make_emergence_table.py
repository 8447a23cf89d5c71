"""Snakemake adapter: emergence times of each factor under the three measurements, and their agreement."""

import pandas as pd

from latent_abstractions.agreement import agreement_table, exact_reference
from latent_abstractions.emergence import emergence_table
from latent_abstractions.io import write_parquet
from latent_abstractions.runtime import setup_logging

log = setup_logging(snakemake.log[0])
probes = pd.read_parquet(snakemake.input.probes)
curves = {"probes": probes[probes["layer"] == snakemake.params.layer],
          "mutual_info": pd.read_parquet(snakemake.input.mutual_info),
          "forking": pd.read_parquet(snakemake.input.forking)}
exact = pd.read_parquet(snakemake.input.exact)
cfg = snakemake.params.cfg
gaps = agreement_table(curves, exact, cfg["thresholds"][0])
curves["exact_filter"] = exact_reference(exact)
table, agreement = emergence_table(curves, cfg["thresholds"], cfg["n_bootstrap"], snakemake.params.seed)
log.info("gaps to the exact filter:\n%s", gaps.drop(columns="reference").to_string())
log.info("agreement:\n%s", agreement.to_string())
write_parquet(table, snakemake.output.table, {"layer": snakemake.params.layer, **cfg})
write_parquet(agreement, snakemake.output.agreement, {"layer": snakemake.params.layer, **cfg})
write_parquet(gaps, snakemake.output.exact_gaps, {"layer": snakemake.params.layer, "exact": "mixture all", **cfg})
