"""Snakemake adapter: the self-contained HTML report of one run."""

import json
import os

import pandas as pd

from latent_abstractions.emergence import MEASUREMENTS, factor_order
from latent_abstractions.report import write_report
from latent_abstractions.runtime import setup_logging

setup_logging(snakemake.log[0])
inp, par = snakemake.input, snakemake.params
figures = {k: inp[k] for k in ("probes", "mutual_info", "forking", "samples_forks", "training_loss")}
captions = {}
for key in figures:
    with open(os.path.join(par.captions_dir, f"{key}.rst")) as f:
        captions[key] = " ".join(f.read().split())
emergence = pd.read_parquet(inp.emergence)
hparams = {}
for path in inp.hparams:
    with open(path) as f:
        hparams[os.path.basename(os.path.dirname(path))] = json.load(f)
write_report(snakemake.output.html, config=par.config, figures=figures, captions=captions, emergence=emergence,
             agreement=pd.read_parquet(inp.agreement), classifier_accuracy=pd.read_parquet(inp.classifier),
             sample_scores={os.path.basename(p).split("_")[-1].split(".")[0]: pd.read_parquet(p) for p in inp.scores},
             hparams=hparams, bench_dir=par.bench_dir,
             orders={m: factor_order(emergence, m, par.first_threshold) for m in MEASUREMENTS},
             exact=pd.read_parquet(inp.exact), exact_gaps=pd.read_parquet(inp.exact_gaps))
