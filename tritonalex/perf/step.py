"""Compile every captured launch (each config of an autotuned one) and estimate it.

`compile_jobs` turns captured launches into distinct compile jobs, deduplicated on what Triton's
binder specializes on (kernel, pointer dtypes and 16-byte alignment, integers ==1 / divisible by
16 / 64-bit, constexprs, config) and the target arch, and compiles them in parallel processes;
`estimate_step` applies the model (`model.py`) to every launch and totals per layer and step.
"""

import math
import os
from collections import OrderedDict
from concurrent.futures import ProcessPoolExecutor
import multiprocessing

from . import model
from .capture import PointerArg
from .sass import analyze, compile_launch

_JOBS = []  # filled before the pool forks: the children read their jobs from here


def _arg_key(a):
    if isinstance(a, PointerArg):
        return ("p", str(a.dtype), a.offset % 16 == 0)
    if isinstance(a, bool) or a is None:
        return ("c", a)
    if isinstance(a, int):
        return ("i", a == 1, a % 16 == 0, abs(a) >= 2**31)
    if isinstance(a, float):
        return ("f",)
    return ("o", repr(a))


def config_variants(launch, arch=None):
    """(label, kwargs) for each config a launch may run with (on `arch`, when given)."""
    from ..kernels.launch import offered_on

    configs = launch.configs or [None]
    for cfg in configs:
        if cfg is not None and arch is not None and not offered_on(cfg, arch, launch.kwargs):
            continue
        kwargs = dict(launch.kwargs)
        if cfg is not None:
            kwargs.update(cfg.kwargs, num_warps=cfg.num_warps, num_stages=cfg.num_stages)
        kwargs.setdefault("num_warps", 4)
        kwargs.setdefault("num_stages", 3)
        blocks = [f"{v}" for k, v in kwargs.items() if k.startswith("BLOCK")]
        label = "x".join(blocks) + f" w{kwargs['num_warps']}"
        if launch.configs:
            label += f" s{kwargs['num_stages']}"
        if kwargs.get("SPLIT") is False:  # kernels/gemm.py's `unsplit` configs
            label += " unsplit"
        yield label, kwargs


def job_key(launch, kwargs, arch):
    constexprs = tuple(sorted((k, repr(v)) for k, v in kwargs.items()))
    return (launch.name, tuple(_arg_key(a) for a in launch.args), constexprs, arch)


def _compile_job(index):
    kernel, args, kwargs, arch = _JOBS[index]
    try:
        return index, analyze(compile_launch(kernel, args, kwargs, arch), arch), None
    except Exception as exc:  # a config that does not compile is a result, not a crash
        message = str(exc).strip().splitlines()[-1][:200] if str(exc).strip() else ""
        return index, None, f"{type(exc).__name__}: {message}"


def compile_all(launches, archs, processes=None, model_builds=True):
    """Compile every (launch, config, arch), and with `model_builds` the builds the model counts
    instructions of (`Cost.paths`); returns {job key: (facts or None, error or None)}."""
    global _JOBS
    jobs = OrderedDict()
    for launch in launches:
        for arch in archs:
            for _, kwargs in config_variants(launch, arch):
                builds = (kwargs, *_model_builds(launch, kwargs)) if model_builds else (kwargs,)
                for build in builds:
                    key = job_key(launch, build, arch)
                    if key not in jobs:
                        jobs[key] = (launch.kernel, launch.args, build, arch)
    keys, _JOBS = list(jobs), list(jobs.values())
    processes = min(processes or os.cpu_count() or 1, len(_JOBS))
    if processes <= 1:
        return {keys[i]: (facts, err) for i, facts, err in map(_compile_job, range(len(_JOBS)))}
    with ProcessPoolExecutor(max_workers=processes,
                             mp_context=multiprocessing.get_context("fork")) as pool:
        return {keys[i]: (facts, err)
                for i, facts, err in pool.map(_compile_job, range(len(_JOBS)))}


def _model_builds(launch, kwargs):
    """The builds the model counts instructions of: one per entry of `Cost.paths` where the
    launch's programs split among several compiled paths, else the launch's own."""
    return [{**kwargs, **path} for path in launch.cost.paths] or [kwargs]


# The SASS facts that count instructions: averaged over a launch's paths (`Cost.paths`).
_COUNTS = ("instructions", "loop_instructions", "nest_instructions", "loop_mufu", "kernel_mufu")


def _facts(launch, kwargs, compiled, arch):
    """(facts, error) the model reads for one config: the real build's, with the instruction
    counts averaged over the builds of its paths where the launch has them."""
    facts, error = compiled[job_key(launch, kwargs, arch)]
    builds = _model_builds(launch, kwargs)
    if facts is None or builds == [kwargs]:
        return facts, error
    counted = []
    for build in builds:
        common, error = compiled[job_key(launch, build, arch)]
        if common is None:
            return None, error
        counted.append(common)
    averaged = {k: sum(c[k] or 0 for c in counted) / len(counted) for k in _COUNTS}
    occupancy = ("registers", "spill_bytes", "shared_bytes", "shared_ok")
    return {**counted[0], **averaged, **{k: facts[k] for k in occupancy}}, None


def estimate_launch(launch, compiled, card, precision):
    """The row for one launch: every config estimated, the fastest clean one kept (standing for
    the autotuner's pick). The row is not `ok` when any offered config fails to compile, spills or
    overflows shared memory: the autotuner could pick it."""
    best, bad = None, []
    for label, kwargs in config_variants(launch, card.arch):
        facts, error = _facts(launch, kwargs, compiled, card.arch)
        grid = launch.grid(kwargs) if callable(launch.grid) else launch.grid
        ctas = math.prod(grid)
        trips = launch.cost.trips(kwargs)
        row = dict(layer=launch.layer, direction=launch.direction, kernel=launch.name,
                   config=label, grid=list(grid), flops=launch.cost.flops,
                   min_bytes=launch.cost.min_bytes,
                   workspace_bytes=launch.cost.workspace_bytes(kwargs),
                   floor_us=model.floor_us(card, launch.cost.flops, launch.cost.min_bytes, precision))
        if facts is None:
            row.update(ok=False, error=error, estimate_us=math.inf, bound="compile failed")
        else:
            est = model.estimate(card, facts, ctas, kwargs["num_warps"], trips, launch.cost.flops,
                                 launch.cost.min_bytes, precision,
                                 workspace_bytes=launch.cost.workspace_bytes(kwargs),
                                 tail_bytes=launch.cost.tail_bytes(kwargs))
            row.update(registers=facts["registers"], spill_bytes=facts["spill_bytes"],
                       shared_bytes=facts["shared_bytes"], async_loads=facts["async_loads"],
                       tma=facts["tma"], stages=facts["stages"],
                       loop_instructions=facts["loop_instructions"],
                       nest_instructions=facts.get("nest_instructions"),
                       instructions=facts["instructions"],
                       loop_mma=len(facts["loop_mma"]), trips=trips, **est)
            row["ok"] = facts["spill_bytes"] == 0 and facts["shared_ok"]
            row["error"] = "" if row["ok"] else ("register spills" if facts["spill_bytes"]
                                                 else "shared memory over the limit")
        if not row["ok"]:
            bad.append(f"{label}: {row['error']}")
        if best is None or (row["ok"], -row["estimate_us"]) > (best["ok"], -best["estimate_us"]):
            best = row
    best["ok"] = not bad
    best["error"] = "; ".join(bad)
    return best


def estimate_step(step, compiled, card):
    """Rows per launch, per-layer totals and the step totals (the JSON `tritonalex kernels
    --step` prints)."""
    precision = model.precision_of(step.dtype)
    rows = [estimate_launch(launch, compiled, card, precision) for launch in step.launches]
    layers = OrderedDict()
    for r in rows:
        t = layers.setdefault(r["layer"], dict(layer=r["layer"], launches=0, estimate_us=0.0,
                                               floor_us=0.0, flops=0, min_bytes=0))
        t["launches"] += 1
        for k in ("estimate_us", "floor_us", "flops", "min_bytes"):
            t[k] += r[k]
    for t in layers.values():
        t["ratio"] = t["estimate_us"] / t["floor_us"] if t["floor_us"] else None
    est, floor = sum(r["estimate_us"] for r in rows), sum(r["floor_us"] for r in rows)
    torch_us = model.torch_kernels_us(card, sum(step.torch_kernels.values()),
                                      sum(step.torch_kernel_bytes.values()))
    totals = dict(
        triton_launches=len(rows),
        torch_kernels=sum(step.torch_kernels.values()),
        torch_kernel_kinds=dict(step.torch_kernels),
        torch_kernel_bytes=sum(step.torch_kernel_bytes.values()),
        # The other kernels' lower bound (launch + bytes, see model.torch_kernels_us), apart
        # from the Triton launches' estimate; with_torch_kernels_us adds the two.
        torch_kernels_us=torch_us, with_torch_kernels_us=est + torch_us,
        optimizer_kernels=sum(step.optimizer_kernels.values()),
        op_calls=dict(step.op_calls),
        estimate_us=est, floor_us=floor, ratio=est / floor if floor else None,
        spills=sum(1 for r in rows if r.get("spill_bytes")),
        failed=sum(1 for r in rows if not r["ok"]),
    )
    return dict(spec=step.spec, batch=step.batch, dtype=step.dtype, layout=step.layout,
                card=card.name, arch=f"sm_{card.arch}", kind="static estimate (not a measurement)",
                launches=rows, layers=list(layers.values()), step=totals)
