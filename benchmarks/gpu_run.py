"""The data -> classifier -> unconditional model -> samples stages of one config, in-process, without Snakemake.

For a GPU machine where Snakemake is not installed: renders the config's synthetic grid, splits it, trains the
attribute classifier and the unconditional score model with the same package functions the rules call, then
samples and scores the model. Prints the timings; ``--copy-to`` receives the small outputs (sample grid,
loss log, classifier and sample-score tables). Time convention: samples run from tau = 0 (noise) to 1 (data).

    PYTHONPATH=src python3 benchmarks/gpu_run.py --config config/gpu.yaml --workdir /tmp/gpu --copy-to out/
"""

import argparse
import shutil
import time
from pathlib import Path

import torch
import yaml

from latent_abstractions import io
from latent_abstractions.classifier import run_classifier_training
from latent_abstractions.generate import sample_and_score
from latent_abstractions.render import GridSpec
from latent_abstractions.runtime import select_device, setup_logging
from latent_abstractions.shapes3d import load_shapes3d, make_split, write_synthetic
from latent_abstractions.train import run_training


def merged(base: dict, over: dict) -> dict:
    """``over`` laid over ``base`` key by key (as Snakemake merges --configfile files)."""
    out = dict(base)
    for k, v in over.items():
        out[k] = merged(base[k], v) if isinstance(v, dict) and isinstance(base.get(k), dict) else v
    return out


parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("--config", default="config/gpu.yaml")
parser.add_argument("--workdir", default="/tmp/latent_abstractions_gpu_run")
parser.add_argument("--copy-to", default=None, help="folder for the sample grid, loss log and tables")
parser.add_argument("--steps", type=int, default=None, help="override training.steps")
args = parser.parse_args()

cfg = merged(yaml.safe_load(open("config/config.yaml")), yaml.safe_load(open(args.config)))
if args.steps:
    cfg["training"]["steps"] = args.steps
if cfg["dataset"]["source"] != "synthetic":
    raise SystemExit(f"{args.config}: this driver renders synthetic data only")
work = Path(args.workdir)
work.mkdir(parents=True, exist_ok=True)
log = setup_logging(str(work / "run.log"))
device = select_device(1 if torch.cuda.is_available() else 0)
seed = cfg["seed"]
timings = {}

t = time.perf_counter()
syn = cfg["dataset"]["synthetic"]
spec = GridSpec.from_counts(syn["resolution"], list(syn["levels"].values()))
h5, split = work / "shapes3d.h5", work / "split.parquet"
write_synthetic(h5, spec, progress=False)
io.write_parquet(make_split(spec.n_images, cfg["dataset"]["test_fraction"], seed), split, {})
timings["data"] = time.perf_counter() - t
log.info("%d images at %d px", load_shapes3d(h5).n, spec.resolution)

t = time.perf_counter()
c = cfg["classifier"]
run_classifier_training(h5, split, width=c["width"], steps=c["steps"], batch_size=c["batch_size"], lr=c["lr"],
                        seed=seed, model_dir=work / "models/classifier",
                        table_out=work / "classifier_accuracy.parquet", device=device)
timings["classifier"] = time.perf_counter() - t

t = time.perf_counter()
info = run_training(h5, split, "uncond", cfg["score_model"], cfg["sde"], cfg["training"], seed, work / "state/uncond",
                    work / "models/uncond", work / "loss_uncond.parquet", device)
timings["train"] = time.perf_counter() - t
log.info("trained %d steps, %.0f images/s", cfg["training"]["steps"],
         cfg["training"]["steps"] * cfg["training"]["batch_size"] / info["seconds"])

t = time.perf_counter()
s = cfg["sampling"]
sample_and_score(work / "models/uncond", work / "models/classifier", work / "samples_uncond.h5",
                 work / "samples_uncond.png", work / "sample_scores_uncond.parquet", n=s["n_samples"],
                 steps=s["steps"], method=s["method"], snr=s["snr"], batch_size=s["batch_size"], seed=seed,
                 device=device)
timings["sample"] = time.perf_counter() - t
log.info("timings (s): %s", {k: round(v, 1) for k, v in timings.items()})

if args.copy_to:
    dest = Path(args.copy_to)
    dest.mkdir(parents=True, exist_ok=True)
    for name in ("samples_uncond.png", "loss_uncond.parquet", "classifier_accuracy.parquet",
                 "sample_scores_uncond.parquet", "run.log"):
        shutil.copy2(work / name, dest / name)
    shutil.copy2(work / "models/uncond/hparams.json", dest / "hparams_uncond.json")
