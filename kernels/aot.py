"""Ahead-of-time compile check: every kernel, every GPU config, for sm_80 and sm_90, without a GPU.

Each kernel file lists ``AOT_CASES``: the kernel, its GPU config list (the same list its launcher
autotunes over), the types of its pointer and float arguments (the rest are i32) and the
constexprs of a representative AlexNet layer. For each
case, config and target this runs Triton's full NVIDIA pipeline (TTIR -> TTGIR -> LLVM -> PTX ->
cubin, with the ptxas bundled in the triton wheel) and reads from the result: registers and spill
bytes (ptxas's own report), shared memory (Triton's metadata) and whether the Hopper build uses
wgmma. That catches what the interpreter lets through: dot tiles under 16, register spills, too
much shared memory, constructs the GPU backend rejects.

Must run with TRITON_INTERPRET unset or 0 (``tritonalex kernels`` starts it so, in a subprocess).
"""

import contextlib
import importlib
import io
import os
import re
import sys
import tempfile
from concurrent.futures import ProcessPoolExecutor

ARCHS = (80, 90)
MODULES = ("conv", "reduce", "lrn", "pool", "gemm", "activation", "augment")


def _jit_function(kernel):
    from triton.runtime.autotuner import Autotuner

    return kernel.fn if isinstance(kernel, Autotuner) else kernel


def _cases():
    for module in MODULES:
        for i, case in enumerate(importlib.import_module(f"{__package__}.{module}").AOT_CASES):
            yield module, i, case


def compile_one(job):
    """Compile one (module, case, config, arch) job; returns a result row as a dict."""
    module, case_index, config_index, arch = job
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    case = importlib.import_module(f"{__package__}.{module}").AOT_CASES[case_index]
    cfg = case["configs"][config_index]
    fn = _jit_function(case["kernel"])
    constexprs = dict(case["constexprs"], **cfg.kwargs)
    signature = {
        name: case["types"].get(name, "constexpr" if name in constexprs else "i32")
        for name in fn.arg_names
    }
    row = dict(kernel=fn.__name__, dtype=case["dtype"], arch=f"sm_{arch}",
               config=" ".join(f"{k}={v}" for k, v in cfg.kwargs.items())
               + f" warps={cfg.num_warps} stages={cfg.num_stages}")
    log = io.StringIO()
    try:
        with contextlib.redirect_stdout(log):  # TRITON_DUMP_PTXAS_LOG prints ptxas -v here
            compiled = triton.compile(
                ASTSource(fn=fn, signature=signature, constexprs=constexprs),
                target=GPUTarget("cuda", arch, 32),
                options=dict(num_warps=cfg.num_warps, num_stages=cfg.num_stages),
            )
    except Exception as exc:  # a config that does not compile is a result, not a crash
        row.update(ok=False, error=f"{type(exc).__name__}: {str(exc).strip().splitlines()[-1][:200]}")
        return row
    text = log.getvalue()
    regs = re.search(r"Used (\d+) registers", text)
    spills = re.search(r"(\d+) bytes spill stores, (\d+) bytes spill loads", text)
    if regs is None or spills is None:
        row.update(ok=False, error="no ptxas report (is TRITON_DUMP_PTXAS_LOG honoured?)")
        return row
    spill_bytes = int(spills.group(1)) + int(spills.group(2))
    row.update(registers=int(regs.group(1)), spills=spill_bytes, shared=compiled.metadata.shared,
               wgmma="wgmma" in compiled.asm["ptx"], ok=spill_bytes == 0,
               error="" if spill_bytes == 0 else "register spills")
    return row


def run_check(jobs_in_parallel=None):
    """Compile every case; returns the result rows in a stable order."""
    jobs = [(module, i, c, arch) for module, i, case in _cases()
            for c in range(len(case["configs"])) for arch in ARCHS]
    with ProcessPoolExecutor(max_workers=jobs_in_parallel or os.cpu_count() or 1) as pool:
        return list(pool.map(compile_one, jobs))


def print_table(rows):
    from rich.console import Console
    from rich.table import Table

    table = Table(title="Ahead-of-time compile check (no GPU needed)")
    for col in ("kernel", "dtype", "arch", "config", "regs", "spills (B)", "shared (B)", "wgmma", "status"):
        table.add_column(col)
    for r in rows:
        ok = r["ok"]
        table.add_row(r["kernel"], r["dtype"], r["arch"], r["config"], str(r.get("registers", "-")),
                      str(r.get("spills", "-")), str(r.get("shared", "-")),
                      ("yes" if r.get("wgmma") else "no") if "wgmma" in r else "-",
                      "ok" if ok else f"FAIL: {r['error']}")
    Console(width=200).print(table)


def main():
    """Entry point for ``tritonalex kernels``; exit status 1 if any config failed or spilled."""
    if os.environ.get("TRITON_INTERPRET", "0") not in ("", "0"):
        sys.exit("the compile check needs TRITON_INTERPRET unset or 0 (it compiles, it does not run)")
    os.environ["TRITON_DUMP_PTXAS_LOG"] = "1"
    os.environ.setdefault("TRITON_DEFAULT_FP_FUSION", "1")  # triton 3.9's default, said explicitly
    # A fresh cache: a cached kernel skips ptxas, and ptxas's report is what this check reads.
    with tempfile.TemporaryDirectory(prefix="tritonalex-aot-") as cache:
        os.environ["TRITON_CACHE_DIR"] = cache
        rows = run_check()
    print_table(rows)
    failed = [r for r in rows if not r["ok"]]
    print(f"{len(rows) - len(failed)} compiled cleanly, {len(failed)} failed or spilled")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
