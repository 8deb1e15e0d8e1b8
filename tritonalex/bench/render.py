"""`tritonalex bench`'s output: the rows as JSON, or a table (measured, or checked without a GPU)."""

import json


def report(rows, args, measured):
    if args.json:
        print(json.dumps(dict(mode="measured" if measured else "checked", rows=rows), indent=1,
                         default=str))
        return
    from rich.console import Console
    from rich.table import Table

    console = Console(width=180)
    if measured:
        first = rows[0] if rows else {}
        table = Table(title=f"tritonalex bench on {first.get('gpu')}, batch {args.batch}; "
                            f"torch {first.get('torch')}, triton {first.get('triton')}")
        for col in ("layer", "dtype", "layout", "direction", "impl", "p50 ms", "p20-p80 ms",
                    "TFLOP/s", "GB/s", "% roofline", "x vs torch", "peak MiB"):
            table.add_column(col, justify="right" if " " in col or "/" in col else "left")
        for r in rows:
            if "p50_ms" not in r:
                table.add_row(r["case"], r["dtype"], r["layout"], r["direction"], r["impl"],
                              r["note"], *[""] * 6)
                continue
            table.add_row(r["case"], r["dtype"], r["layout"], r["direction"], r["impl"],
                          f"{r['p50_ms']:.4f}", f"{r['p20_ms']:.4f}-{r['p80_ms']:.4f}",
                          f"{r['tflops']:.1f}", f"{r['gbps']:.0f}", f"{r['pct_of_roofline']:.1f}",
                          f"{r['speedup_vs_torch']:.2f}", f"{r['peak_mib']:.1f}")
        console.print(table)
        return
    console.print("No CUDA GPU: timings need one, so none are shown. Each kernel was instead "
                  f"checked against torch in float64 under Triton's interpreter at batch "
                  f"{args.check_batch}; FLOPs, bytes and the H100 roofline floor are for batch "
                  f"{args.batch} at the given dtype.")
    table = Table(title="tritonalex bench: interpreter check and H100 floors (no timings)")
    for col in ("layer", "dtype", "layout", "direction", "check", "max rel error", "GFLOP",
                "MB moved", "H100 floor ms"):
        table.add_column(col)
    for r in rows:
        table.add_row(r["case"], r["dtype"], r["layout"], r["direction"], r["check"],
                      f"{r['max_rel_error']:.1e}", f"{r['gflop']:.3f}", f"{r['mbytes']:.1f}",
                      f"{r['h100_floor_ms']:.4f}")
    console.print(table)
