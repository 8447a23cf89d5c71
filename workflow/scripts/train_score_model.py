"""Snakemake adapter: train one score model (resumes from its state directory; exits 75 at a segment's end)."""

import sys

from latent_abstractions.runtime import EXIT_RESUME, rule_logging, select_device

with rule_logging(snakemake.log[0], snakemake.rule) as log:
    from latent_abstractions.model.trainer import SegmentEnded
    from latent_abstractions.stages.train import train_score_model

    inp, out, par, res = snakemake.input, snakemake.output, snakemake.params, snakemake.resources
    # execution settings: read here, not through params, so that changing them reruns no finished model
    run = snakemake.config["training"]
    gpus = res.get("gpu", 0)
    if gpus and gpus != run["gpus"]:
        raise ValueError(
            f"this job was given gpu={gpus} but training.gpus is {run['gpus']}: ask for one GPU per process "
            f"(Slurm: the profile's set-resources train_score_model gpu)"
        )
    # threads of each process: the CPUs Slurm gives each GPU (the profile's cpus_per_gpu), else a share of the job's
    threads = (gpus and res.get("cpus_per_gpu", 0)) or max(1, snakemake.threads // run["gpus"])
    try:
        train_score_model(
            inp.h5,
            inp.split,
            out.model,
            out.hparams,
            out.loss,
            model=snakemake.wildcards.model,
            net=par.net,
            label_dropout=par.label_dropout,
            sigma_min=par.sigma_min,
            sigma_max=par.sigma_max,
            training={**par.training, "segment_minutes": run["segment_minutes"]},
            seed=par.seed,
            state_dir=par.state_dir,
            device=select_device(gpus, snakemake.threads, training=True),
            processes=run["gpus"],
            threads=threads,
            log_path=snakemake.log[0],
        )
    except SegmentEnded as stop:
        log.info("%s", stop)
        sys.exit(EXIT_RESUME)
