"""The rehearsal: config/paper.yaml's shapes on the CPU, every rule measured against the cost plan.

    .venv/bin/python benchmarks/rehearsal.py [--cores 2]                    # run the DAG, then compare
    .venv/bin/python benchmarks/rehearsal.py --results results/rehearsal    # compare a finished run
    .venv/bin/python benchmarks/rehearsal.py --results results/rehearsal --live-check

Per rule of the plan (``latent_abstractions.plan`` for the same config files, as the workflow computes its
resources): the peak RSS of each job (Snakemake's benchmark ``max_rss``, MiB) against the ``mem_mb`` the rule asked
for; the network evaluations the stages logged ("network evaluations: N rows", summed over the rule's jobs) against
the plan's count at the rehearsal's counts; the plan's peak device memory of a batch against the device's batch
budget; the wall time of its jobs. ``--live-check`` also runs each network use once on the real CPU kernels at the
rows per call the stage uses in this config and compares the live tensor bytes with the plan's prediction, byte
for byte (the plan measures on the meta device at one and two rows and extrapolates).

Writes <results>/benchmarks/rehearsal.json and rehearsal.md and prints the table. Exits 1 if a counted number of
evaluations differs from the plan's, a job's peak RSS exceeds its mem_mb, a live count differs from the
prediction, or a planned rule left no benchmark (or a network rule no count); 2 on bad arguments.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from latent_abstractions import plan as P  # noqa: E402
from latent_abstractions.config import ConfigError, load_config  # noqa: E402

DEFAULT_CONFIGS = ["config/paper.yaml", "config/rehearsal.yaml"]
#: The rules whose stages run the score network and log what they put through it.
NETWORK_RULES = ("train_score_model", "sample_images", "extract_features", "estimate_mutual_information", "run_forking")
EVALUATIONS = re.compile(r"network evaluations: (\d+) rows")
#: Snakemake's benchmark columns read: wall seconds, peak resident memory (MiB), mean CPU load of the job.
COLUMNS = {"seconds": "s", "max_rss_mib": "max_rss", "mean_load": "mean_load"}
THREADS = 1  # the workflow's threads per job (workflow/rules/common.smk), which its resources are planned for


def read_benchmarks(results: Path, rule: str) -> dict[str, dict]:
    """{job: {"seconds", "max_rss_mib", "mean_load"}} from <results>/benchmarks/<rule>/*.tsv (the last row)."""
    jobs = {}
    for tsv in sorted((results / "benchmarks" / rule).glob("*.tsv")):
        with tsv.open() as f:
            rows = list(csv.DictReader(f, delimiter="\t"))
        if not rows:
            continue
        last = rows[-1]
        jobs[tsv.stem] = {key: _number(last, col) for key, col in COLUMNS.items()}
    return jobs


def _number(row: dict, key: str) -> float | None:
    try:
        return float(row[key])
    except (KeyError, ValueError):  # Snakemake writes "NA" where it could not measure
        return None


def logged_evaluations(results: Path, rule: str) -> dict[str, int]:
    """{job: rows} from the "network evaluations: N rows" lines of <results>/logs/<rule>/*.log (summed per log)."""
    out = {}
    for log in sorted((results / "logs" / rule).glob("*.log")):
        found = [int(n) for n in EVALUATIONS.findall(log.read_text(errors="replace"))]
        if found:
            out[log.stem] = sum(found)
    return out


def rows_per_call(config: dict, results: Path) -> list[dict]:
    """Each network use of the rehearsal with the rows per call its stage uses here: the configured batch lowered
    to the budget of ``device_memory_gb`` on this CPU (``plan.stage_batch``, as the stage calls it) and to the
    rows there are; the networks' shapes from the run's own hparams.json."""
    import torch

    from latent_abstractions.data.split import split_sizes
    from latent_abstractions.preflight import dataset_shape

    cpu, gb = torch.device("cpu"), config.get("device_memory_gb", "auto")
    res, n_images, _ = dataset_shape(config)
    n_train, n_test = split_sizes(n_images, config["dataset"]["test_fraction"])
    image = 4 * 3 * res**2
    hp = {m: json.loads((results / "models" / m / "hparams.json").read_text())["net"] for m in ("uncond", "cond")}
    n_factors = sum(1 for n in P._levels_present(config) if n > 1)

    def batch(configured, key, rule, model, use="forward", layers=(), **kw):
        return P.stage_batch(
            configured, key=key, rule=rule, net_hparams=hp[model], device_memory_gb=gb, device=cpu, use=use,
            layers=layers, **kw,
        )  # fmt: skip

    t, s, f, m, k = (config[x] for x in ("training", "sampling", "features", "mutual_info", "forking"))
    uses = []
    for model in ("uncond", "cond"):
        rows = min(t.get("micro_batch") or t["batch_size"], t["batch_size"])
        uses.append(dict(rule="train_score_model", model=model, use="train", rows=rows, extra=0, fixed_extra=0))
    for model in ("uncond", "cond"):
        rows = min(batch(s["batch_size"], "sampling.batch_size", "sample_images", model), s["n_samples"])
        uses.append(dict(rule="sample_images", model=model, use="forward", rows=rows, extra=0, fixed_extra=0))
    n_feat = min(f["n_train"], n_train) + min(f["n_test"], n_test)
    rows = min(
        batch(f["batch_size"], "features.batch_size", "extract_features", "uncond", "features", f["layers"]), n_feat
    )
    uses.append(dict(rule="extract_features", model="uncond", use="features", layers=f["layers"], rows=rows))
    n_mi = min(m["n_images"], n_test)
    fixed = n_mi * image  # the images stay on the device
    b = batch(m["batch_size"], "mutual_info.batch_size", "estimate_mutual_information", "cond", fixed_extra=fixed,
              min_rows=n_factors + 1)  # fmt: skip
    rows = min(b // (n_factors + 1), n_mi) * (n_factors + 1)  # whole images per call
    uses.append(dict(rule="estimate_mutual_information", model="cond", use="forward", rows=rows, fixed_extra=fixed))
    rows = min(batch(k["batch_size"], "forking.batch_size", "run_forking", "uncond"), k["n_base"] * k["n_forks"])
    uses.append(dict(rule="run_forking", model="uncond", use="forward", rows=rows))
    for u in uses:
        u["net"] = hp[u["model"]]
        u.setdefault("layers", ())
        u.setdefault("fixed_extra", 0)
        u["extra"] = P.ROW_BUFFERS.get(u["rule"], 0) * image
    return uses


def live_check(uses: list[dict]) -> list[dict]:
    """The live tensor bytes of each use at its rows, counted through the real CPU kernels, against the plan."""
    import torch

    from latent_abstractions.model.networks import NCSNpp

    out = []
    for u in uses:
        cost = P.measure_network(u["net"], u["use"], u["layers"])
        with torch.device("meta"):
            buffers = sum(b.numel() * b.element_size() for b in NCSNpp(**u["net"]).buffers())
        predicted = cost.peak(u["rows"]) - cost.param_bytes - buffers  # the batch's tensors, weights left out
        t0 = time.perf_counter()
        with torch.random.fork_rng(devices=[]):
            measured = P.run_network("score", u["net"], u["use"], u["rows"], layers=u["layers"], device="cpu")[0]
        out.append(
            {
                "rule": u["rule"],
                "model": u["model"],
                "use": u["use"],
                "rows": u["rows"],
                "predicted_bytes": int(predicted),
                "measured_bytes": int(measured),
                "seconds": round(time.perf_counter() - t0, 1),
            }
        )
        print(f"live check {u['rule']} ({u['model']}, {u['use']}, {u['rows']} rows): predicted {predicted:,} "
              f"bytes, measured {measured:,}", file=sys.stderr)  # fmt: skip
    return out


def compare(config: dict, results: Path, uses: list[dict] | None = None) -> tuple[list[dict], list[str], dict]:
    """(one row per planned rule, the problems found, the plan's assumptions) for the run in ``results``."""
    plan = P.plan(config, threads=THREADS)
    budget_gib = plan.assumptions["batch_budget_gib"]
    at_rows = {}
    for u in uses or []:
        cost = P.measure_network(u["net"], u["use"], u["layers"])
        tensors = cost.peak(u["rows"]) + u["rows"] * u["extra"] + u["fixed_extra"]
        at_rows.setdefault(u["rule"], []).append((u["rows"], tensors / P.GIB))
    rows, problems = [], []
    for r in plan.rules:
        bench = read_benchmarks(results, r.rule)
        counted = logged_evaluations(results, r.rule) if r.rule in NETWORK_RULES else {}
        if not bench:
            problems.append(f"{r.rule}: no benchmark in {results / 'benchmarks' / r.rule}")
        rss = [j["max_rss_mib"] for j in bench.values() if j["max_rss_mib"] is not None]
        for job, j in bench.items():
            if j["max_rss_mib"] is not None and j["max_rss_mib"] > r.mem_mb:
                problems.append(f"{r.rule} ({job}): peak RSS {j['max_rss_mib']:.0f} MiB > mem_mb {r.mem_mb}")
        row = {
            "rule": r.rule,
            "jobs": len(bench),
            "max_rss_mib": max(rss) if rss else None,
            "mem_mb": r.mem_mb,
            "plan_host_gib": round(r.peak_host_gib, 3),
            "seconds": round(sum(j["seconds"] or 0 for j in bench.values()), 1),
            "seconds_per_job": {job: j["seconds"] for job, j in bench.items()},
            "mean_load": max((j["mean_load"] or 0 for j in bench.values()), default=None),
            "network": r.rule in NETWORK_RULES,
            "evaluations_planned": r.evaluations,
            "evaluations_counted": sum(counted.values()) if r.rule in NETWORK_RULES and counted else None,
            "evaluations_per_job": counted,
            "plan_batch": r.batch,
            "plan_device_gib": round(r.peak_device_gib, 3),
            "batch_budget_gib": budget_gib,
            "rehearsal_rows_device_gib": at_rows.get(r.rule),
        }
        if r.rule in NETWORK_RULES:
            if not counted:
                problems.append(f"{r.rule}: no 'network evaluations' line in {results / 'logs' / r.rule}")
            elif row["evaluations_counted"] != r.evaluations:
                problems.append(
                    f"{r.rule}: {row['evaluations_counted']} evaluations counted, the plan predicts {r.evaluations}"
                )
        if r.peak_device_gib - (P.DEVICE_RESERVE_GIB if r.peak_device_gib else 0) > budget_gib + 1e-9:
            problems.append(f"{r.rule}: the plan's batch needs {r.peak_device_gib:.2f} GiB, over the budget")
        rows.append(row)
    return rows, problems, plan.assumptions


def machine() -> dict:
    info = {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()}
    try:
        model = next(ln for ln in Path("/proc/cpuinfo").read_text().splitlines() if ln.startswith("model name"))
        info["cpu"] = model.split(":", 1)[1].strip()
        mem = next(ln for ln in Path("/proc/meminfo").read_text().splitlines() if ln.startswith("MemTotal"))
        info["memory_gib"] = round(int(mem.split()[1]) / 2**20, 1)
    except (OSError, StopIteration):
        pass
    info["load_average"] = [round(x, 2) for x in os.getloadavg()]
    return info


def _fmt(x, spec="", none="-"):
    return none if x is None else format(x, spec)


def markdown(rows: list[dict], assumptions: dict, live: list[dict] | None) -> str:
    lines = [
        "| rule | jobs | peak RSS (MiB) | mem_mb | evaluations counted | planned | plan batch | plan device GiB "
        f"({assumptions['accelerator']}, budget {assumptions['batch_budget_gib']:g}) | rehearsal rows: GiB | wall s |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        counted = _fmt(r["evaluations_counted"], ",") if r["network"] else "not a network rule"
        planned = f"{r['evaluations_planned']:,}" if r["network"] else "-"
        at = ", ".join(f"{n}: {g:.2f}" for n, g in r["rehearsal_rows_device_gib"] or []) or "-"
        lines.append(
            f"| {r['rule']} | {r['jobs']} | {_fmt(r['max_rss_mib'], ',.0f')} | {r['mem_mb']:,} | {counted} | "
            f"{planned} | {_fmt(r['plan_batch'])} | {r['plan_device_gib']:.2f} | {at} | {r['seconds']:,.1f} |"
        )
    if live:
        lines += [
            "",
            "| live check | use | rows | predicted bytes | measured bytes (CPU kernels) |",
            "|---|---|---:|---:|---:|",
        ]
        for c in live:
            lines.append(
                f"| {c['rule']} ({c['model']}) | {c['use']} | {c['rows']} | {c['predicted_bytes']:,} | "
                f"{c['measured_bytes']:,} |"
            )
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--configfile", nargs="+", default=DEFAULT_CONFIGS, help="default: %(default)s")
    parser.add_argument("--results", type=Path, help="a finished run's directory (default: run the DAG first)")
    parser.add_argument("--cores", type=int, default=2, help="Snakemake --cores when running the DAG")
    parser.add_argument("--live-check", action="store_true", help="count live tensors on the CPU kernels too")
    args = parser.parse_args(argv)
    os.chdir(ROOT)
    try:
        config = load_config(args.configfile)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    results = args.results or Path("results") / config["run_name"]
    if args.results is None:
        snakemake = Path(sys.executable).with_name("snakemake")
        cmd = [str(snakemake), "--cores", str(args.cores), "--configfile", *args.configfile]
        print("running:", " ".join(cmd), file=sys.stderr)
        if subprocess.run(cmd).returncode != 0:
            print("error: the rehearsal's workflow failed (its log is above)", file=sys.stderr)
            return 1
    if not results.is_dir():
        print(f"error: --results {results}: no such directory", file=sys.stderr)
        return 2
    try:
        uses = rows_per_call(config, results)
    except (OSError, KeyError, ValueError) as err:
        print(f"error: {results}: cannot read the run's models ({err})", file=sys.stderr)
        return 2
    live = live_check(uses) if args.live_check else None
    rows, problems, assumptions = compare(config, results, uses)
    for c in live or []:
        if c["measured_bytes"] != c["predicted_bytes"]:
            problems.append(
                f"live check {c['rule']} ({c['model']}, {c['rows']} rows): {c['measured_bytes']:,} bytes measured, "
                f"{c['predicted_bytes']:,} predicted"
            )
    report = {
        "configfiles": args.configfile,
        "results": str(results),
        "machine": machine(),
        "assumptions": assumptions,
        "rules": rows,
        "live_check": live,
        "problems": problems,
    }
    table = markdown(rows, assumptions, live)
    out = results / "benchmarks"
    out.mkdir(parents=True, exist_ok=True)
    for name, text in (("rehearsal.json", json.dumps(report, indent=1)), ("rehearsal.md", table + "\n")):
        tmp = out / f".{name}.tmp"
        tmp.write_text(text)
        os.replace(tmp, out / name)
    print(table)
    print(f"\nwritten: {out / 'rehearsal.json'}, {out / 'rehearsal.md'}")
    for p in problems:
        print(f"problem: {p}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
