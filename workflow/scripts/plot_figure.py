"""Snakemake adapter: draw one of the report's figures (chosen by params.figure) as PDF + PNG."""

import h5py
import pandas as pd

from latent_abstractions import plotting
from latent_abstractions.runtime import setup_logging

setup_logging(snakemake.log[0])
inp, out, figure = snakemake.input, snakemake.output.pdf, snakemake.params.figure
exact = pd.read_parquet(inp.exact) if "exact" in inp.keys() else None
if figure == "probes":
    plotting.plot_probes(pd.read_parquet(inp.probes), out, exact)
elif figure == "mutual_info":
    plotting.plot_mutual_info(pd.read_parquet(inp.mutual_info), out, exact)
elif figure == "forking":
    plotting.plot_forking(pd.read_parquet(inp.forking), out, exact)
elif figure == "training_loss":
    plotting.plot_training_loss({"uncond": pd.read_parquet(inp.uncond), "cond": pd.read_parquet(inp.cond)}, out)
elif figure == "samples_forks":
    with h5py.File(inp.samples) as s, h5py.File(inp.strips) as f:
        plotting.plot_samples_forks(s["images"][...], f["images"][...], f["taus"][...], out)
else:
    raise ValueError(f"unknown figure {figure!r}")
