"""`tritonalex bench --plot FILE.png`: speedup over torch eager per layer, from recorded rows.

For every (card, dtype, layout, direction) the newest run's rows are drawn: one bar per layer and
implementation (tritonalex, torch.compile), the torch eager time being 1.0.
"""

import csv
import os
import sys

from .._output import pyplot, save_figure
from .harness import read_csv
from .layers import order


def latest_speedups(rows):
    """{(gpu, dtype, layout, direction): {impl: {layer: speedup}}} from each group's newest run."""
    newest = {}
    for r in rows:
        key = (r["gpu"], r["dtype"], r["layout"], r["direction"])
        newest[key] = max(newest.get(key, ""), r["date"])
    groups = {}
    for r in rows:
        key = (r["gpu"], r["dtype"], r["layout"], r["direction"])
        if r["date"] != newest[key] or r["impl"] == "torch" or not r["speedup_vs_torch"]:
            continue
        groups.setdefault(key, {}).setdefault(r["impl"], {})[r["case"]] = float(r["speedup_vs_torch"])
    return groups


def plot_speedups(csv_path, out_path):
    """Draw the plot; returns an exit code (2 with a message when it cannot)."""
    plt = pyplot()
    if plt is None:
        print("error: --plot needs matplotlib: pip install matplotlib (or tritonalex[plot])",
              file=sys.stderr)
        return 2
    if not os.path.exists(csv_path):
        print(f"error: no recorded results at {csv_path}; run `tritonalex bench` on a CUDA GPU "
              f"first (or pass --csv)", file=sys.stderr)
        return 2
    try:
        groups = latest_speedups(read_csv(csv_path))
    except (OSError, ValueError, KeyError, csv.Error, UnicodeDecodeError) as exc:
        print(f"error: --csv {csv_path}: not a tritonalex bench CSV ({type(exc).__name__}: {exc})",
              file=sys.stderr)
        return 2
    if not groups:
        print(f"error: {csv_path} has no measured rows to plot", file=sys.stderr)
        return 2
    fig, axes = plt.subplots(len(groups), 1, figsize=(12, 3.2 * len(groups)), squeeze=False)
    for ax, ((gpu, dtype, layout, direction), impls) in zip(axes[:, 0], sorted(groups.items())):
        cases = sorted({c for by_case in impls.values() for c in by_case},
                       key=lambda c: order().index(c) if c in order() else len(order()))
        width = 0.8 / len(impls)
        for i, (impl, by_case) in enumerate(sorted(impls.items(), key=lambda kv: kv[0] != "tritonalex")):
            xs = [j + i * width for j, c in enumerate(cases) if c in by_case]
            ax.bar(xs, [by_case[c] for c in cases if c in by_case], width, label=impl)
        ax.axhline(1.0, color="black", linewidth=0.8)
        ax.set_xticks([j + 0.4 - width / 2 for j in range(len(cases))], cases)
        ax.set_ylabel("speedup vs torch")
        ax.set_title(f"{gpu}: {dtype}, {layout}, {direction}")
        ax.legend()
    fig.tight_layout()
    try:
        save_figure(fig, out_path)  # atomically, like every result file
    except OSError as exc:
        print(f"error: --plot {out_path}: cannot write it ({exc.strerror or exc})", file=sys.stderr)
        return 2
    print(f"wrote {out_path} ({len(groups)} panels from {csv_path})")
    return 0
