"""Figure and Markdown tables of a full-grid exact-filter table (the output of benchmarks/exact_filter_throughput.py).

Draws the exact MI, Bayes accuracy and forking curves to the given figure and prints two tables for
docs/exact_filter.md: per factor, in the order the exact filter commits them, the tau at which its exact MI covers
50% and 90% of its range (and the Bayes accuracy 50%), I(Y_0), log L and the largest MI standard error; then the
exact MI per tau and factor. Run from the repository root:

    .venv/bin/python -m diagnostics.exact_filter_docs /tmp/exact_full/exact_filter_full.parquet docs/exact_filter.png
"""

import argparse

import pandas as pd

from latent_abstractions.measure.emergence import crossing_tau
from latent_abstractions.report.plots import draw_exact_filter

parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("table")
parser.add_argument("figure")
args = parser.parse_args()
df = pd.read_parquet(args.table)
n, q = int(df["n_images"].iloc[0]), int(df["n_samples"].iloc[0])
draw_exact_filter(
    df, args.figure, title=f"Exact filter of the full Shapes3D grid ({n:,} images, 64x64; {q} query states per τ)"
)
rows = []
for factor, d in df.groupby("factor", sort=False):
    d = d.sort_values("tau")
    t, mi = d["tau"].to_numpy(), d["mi"].to_numpy()
    rows.append(
        {
            "factor": factor,
            "levels": int(d["n_levels"].iloc[0]),
            "τ at 50% of exact MI": crossing_tau(t, mi, 0.5, True),
            "τ at 90%": crossing_tau(t, mi, 0.9, True),
            "τ Bayes acc. 50% of range": crossing_tau(t, d["bayes_accuracy"].to_numpy(), 0.5, True),
            "I(Y_0) [nats]": float(d["mi_at_noise"].iloc[0]),
            "log L [nats]": float(d["ceiling"].iloc[0]),
            "max MI s.e.": float(d["mi_se"].max()),
        }
    )
table = pd.DataFrame(rows).sort_values("τ at 50% of exact MI")
print(table.to_markdown(index=False, floatfmt=".3f"))
wide = df.pivot(index="tau", columns="factor", values="mi").round(3)
print()
print(wide[table["factor"]].reset_index().to_markdown(index=False, floatfmt=".3f"))
