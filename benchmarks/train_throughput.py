"""Training throughput of the score model: images/s, achieved TFLOP/s, MFU, peak memory.

Runs the production training loop (``model.trainer.fit_score_model``: bf16 autocast, channels_last, fused Adam,
fused EMA, data on the GPU, no host syncs between log points) on random uint8 data and times the steps
after warm-up (and compilation). FLOPs per training image are counted with torch.utils.flop_counter on
one forward + backward pass; MFU is against ``--peak-tflops``.

    .venv/bin/python benchmarks/train_throughput.py --config config/paper.yaml --batch-size 128 --steps 200
    .venv/bin/python benchmarks/train_throughput.py --batch-size 128 --steps 300 --warmup 60 --compile

Targets and measured numbers: docs/benchmarks.md.
"""

import argparse
import tempfile
import time

import torch
import yaml
from torch.utils.flop_counter import FlopCounterMode

from latent_abstractions.model.losses import LogUniformSigma, dsm_loss
from latent_abstractions.model.precond import build_score_network
from latent_abstractions.model.sde import VESDE
from latent_abstractions.model.trainer import TrainSettings, fit_score_model

parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("--config", default="config/paper.yaml")
parser.add_argument("--batch-size", type=int, default=128)
parser.add_argument("--steps", type=int, default=200)
parser.add_argument("--warmup", type=int, default=40, help="steps excluded from the timing")
parser.add_argument("--compile", action="store_true")
parser.add_argument("--no-bf16", action="store_true")
parser.add_argument("--peak-tflops", type=float, default=759.0, help="bf16 dense peak for MFU (H100 measured)")
parser.add_argument("--resolution", type=int, default=None)
args = parser.parse_args()

cfg = yaml.safe_load(open(args.config))
m = cfg["score_model"]
res = args.resolution or cfg["dataset"].get("synthetic", {}).get("resolution", 64)
net_kwargs = dict(
    img_resolution=res,
    nf=m["nf"],
    ch_mult=m["ch_mult"],
    num_res_blocks=m["num_res_blocks"],
    attn_resolutions=m["attn_resolutions"],
    dropout=m.get("dropout", 0.0),
)
precond = {"name": m.get("precond", "none")}  # EDM's statistics left at their defaults: the cost is the same
device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
sde = VESDE(0.01, 110.0)

# FLOPs of one training image: forward + backward of the DSM loss, counted once.
net = build_score_network(net_kwargs, precond).to(device)
n_params = sum(p.numel() for p in net.parameters())
x = torch.rand(8, 3, res, res, device=device)
with FlopCounterMode(display=False) as counter:
    dsm_loss(net, x, sampler=LogUniformSigma(sde)).backward()
flops_per_image = counter.get_total_flops() / 8
del net

images = torch.randint(0, 256, (4096, 3, res, res), dtype=torch.uint8)
settings = TrainSettings(
    steps=args.steps,
    batch_size=args.batch_size,
    lr=2e-4,
    warmup_steps=10,
    grad_clip=1.0,
    ema_decay=0.999,
    checkpoint_every=10**9,
    log_every=args.warmup,
    bf16=not args.no_bf16,
    compile=args.compile,
    seed=0,
)
if args.steps <= args.warmup:
    raise SystemExit("--steps must exceed --warmup")
if device.type == "cuda":
    torch.cuda.reset_peak_memory_stats()
t0 = time.perf_counter()
with tempfile.TemporaryDirectory() as state:
    _, log, _ = fit_score_model(images, None, net_kwargs, precond, sde, settings, state, device, progress=False)
wall = time.perf_counter() - t0
# rows are logged every `warmup` steps; time the steps after the first row (warm-up and compilation)
first, last = log.iloc[0], log.iloc[-1]
steps_timed = last["step"] - first["step"]
ips = steps_timed * args.batch_size / (last["seconds"] - first["seconds"])
tflops = ips * flops_per_image / 1e12
peak_mem = torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else float("nan")
name = torch.cuda.get_device_name(0) if device.type == "cuda" else "cpu"
print(
    f"device: {name}  resolution: {res}  params: {n_params / 1e6:.2f} M  batch: {args.batch_size}  "
    f"bf16: {not args.no_bf16}  compile: {args.compile}"
)
print(f"GFLOP per training image (fwd+bwd): {flops_per_image / 1e9:.1f}")
print(
    f"images/s: {ips:.0f}  achieved: {tflops:.1f} TFLOP/s  MFU: {100 * tflops / args.peak_tflops:.1f}% "
    f"of {args.peak_tflops:.0f}  peak memory: {peak_mem:.1f} GiB  (timed {steps_timed} steps, total {wall:.0f} s)"
)
