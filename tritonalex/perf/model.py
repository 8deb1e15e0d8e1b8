"""The static performance model: a time estimate per launch from its compiled SASS.

It is an estimate, not a measurement, and is labelled so wherever it is shown. Per launch, with
the launch's grid, the SASS facts of `sass.py` and the launch's `Cost` (useful FLOPs, minimum
bytes, main-loop trips per program):

    CTAs/SM   = min(32, 64 warps / warps, 64K registers / (regs rounded to 256 per warp * warps),
                    shared memory per SM / shared per CTA)              (occupancy)
    per SM    = ceil(CTAs / SMs) programs;  rounds = ceil(per SM / CTAs per SM)
    instr     = warps * (loop instructions * trips + other instructions)    (per program)
    mma flops = trips * sum over the loop's tensor-core instructions of their shape's FLOPs
                (HGMMA m x n x k per warpgroup, HMMA/DMMA per warp): padding and waste included
    tensor    = per SM * mma flops / (tensor FLOPs per clock per SM * clock)
    issue     = per SM * instr / (4 warp-instructions per clock * ISSUE_EFFICIENCY * clock)
    sfu       = per SM * warps * MUFU instructions (counted as instr) * 32 lanes
                / (SFU_PER_CLOCK lanes per clock * clock): lg2, ex2, rcp run at a quarter rate
    memory    = (min bytes + workspace bytes) / (bandwidth * MEMORY_EFFICIENCY); workspace: what
                a split reduction's partial sums write and read back (counted as DRAM traffic,
                though much of it stays in L2)
    latency   = rounds * trips * LOAD_LATENCY / (clock * in flight), in flight = the stages - 1
                a pipelined loop keeps ahead (1 when its loads are synchronous)
    tail      = tail bytes / (L2_BYTES_PER_CLOCK * clock): what one program reads after its main
                loop before the launch can end (a split reduction's last arrival summing its
                tile's partials, from L2), serial after the rest
    estimate  = max(tensor, issue, sfu, memory, latency) + tail + LAUNCH_US;  bound = the
                largest of the five
    floor     = max(flops / datasheet tensor peak, min bytes / datasheet bandwidth)

For an autotuned launch every config is compiled and estimated, and the one with the smallest
estimate stands for the autotuner's choice.

Hardware constants, with their sources:
  H100 SXM5: 132 SMs; tensor-core peaks 989.4 TFLOP/s dense bf16/fp16, 494.7 tf32, 66.9 fp64
    (NVIDIA H100 Tensor Core GPU datasheet), which at 1.83 GHz (the clock the peaks imply:
    989.4e12 / (132 * 1.83e9) = 4096 FLOPs per clock per SM, the Hopper whitepaper's dense
    per-SM rate) give 4096 / 2048 / 277 FLOPs per clock per SM; HBM3 3.35 TB/s (datasheet);
    fp32 without tensor cores 66.9 TFLOP/s; 228 KB shared memory, 64K registers, 64 warps and 32
    CTAs per SM (CUDA C++ Programming Guide, compute capability 9.0).
  A100 SXM4 80GB: 108 SMs, 1.41 GHz boost; 312 TFLOP/s bf16/fp16 (2048 FLOPs/clock/SM), 156
    tf32, 19.5 fp64 tensor and fp32; HBM2e 2.039 TB/s (NVIDIA A100 datasheet); 164 KB shared,
    64K registers, 64 warps, 32 CTAs per SM (compute capability 8.0).
  Both: 4 warp schedulers per SM, each issuing one warp-instruction per clock (whitepapers); 16
    results per clock per SM of the special functions (lg2, ex2, rcp, rsqrt, sin, cos: CUDA C++
    Programming Guide, arithmetic instruction throughput, compute capabilities 8.0 and 9.0).
Assumptions (to be calibrated against a GPU when one is lent; `bench/gpu_check.sh` does it):
  TENSOR_EFFICIENCY 0.8 (a well-fed bf16 GEMM reaches ~800 TFLOP/s on the lent H100, measured),
  MEMORY_EFFICIENCY 0.9 (~3.0 TB/s device-to-device copy on the lent H100, measured),
  ISSUE_EFFICIENCY 0.75, LOAD_LATENCY 600 clocks (global load round trip under load),
  L2_BYTES_PER_CLOCK 64 (one SM's reads from L2: the width of its port to the crossbar), LAUNCH_US
  2 us per launch (GPU-side gap between back-to-back launches; host cost is not modelled).
A launch whose programs split evenly among several compiled paths, each program running one (the
fused LRN -> max-pool walk's stride classes), names them (`Cost.paths`): instructions are the
average of the builds with one path each, registers and shared memory (occupancy, spills) read
from the real build.
What it ignores: caches (bytes beyond the minimum, L2 hits that make re-reads cheap), branch
divergence and other code a program skips (all SASS outside the main loop is counted once), the
trip counts of loops around the main loop (a main loop nested in others is counted as the
outermost one's instructions per main-loop trip: an upper bound; no kernel of the alexnet step
nests its main loop), bank conflicts, instruction
latencies other than global loads, power and clock throttling, overlap between launches.

Published figure it was checked on (see `tests/test_perf.py`, `check_published`): a Triton
tutorial-style matmul (128x256x64 tiles, 8 warps, 3 stages, the tutorial's first Hopper config)
on the bf16 GEMM 4224 x 2048 x 8192 of Horace He's "H100 peak matmul FLOPS" gist
(gist.github.com/Chillee/2ec89696db8b7ed1c24461159e325405: 780 TFLOP/s, i.e. 181 us, with
torch.compile max-autotune); the model's estimate is stated there with its ratio.
"""

import dataclasses
import math


@dataclasses.dataclass(frozen=True)
class Card:
    name: str
    arch: int
    sms: int
    clock_hz: float
    tensor_flops_per_clock: dict  # per SM, by dot class: "bf16"/"fp16", "tf32", "fp64"
    peak_flops: dict  # datasheet peak by precision (the floor's FLOP term)
    bandwidth: float  # bytes/s, datasheet
    shared_per_sm: int
    registers_per_sm: int = 65536
    warps_per_sm: int = 64
    ctas_per_sm: int = 32


CARDS = {
    "h100": Card("H100 SXM5", 90, 132, 1.83e9,
                 {"bf16": 4096, "fp16": 4096, "tf32": 2048, "fp64": 277},
                 {"bf16": 989.4e12, "fp16": 989.4e12, "tf32": 494.7e12, "fp32": 66.9e12,
                  "fp64": 66.9e12},
                 3.35e12, 228 * 1024),
    "a100": Card("A100 SXM4 80GB", 80, 108, 1.41e9,
                 {"bf16": 2048, "fp16": 2048, "tf32": 1024, "fp64": 128},
                 {"bf16": 312e12, "fp16": 312e12, "tf32": 156e12, "fp32": 19.5e12,
                  "fp64": 19.5e12},
                 2.039e12, 164 * 1024),
}
CARD_FOR_ARCH = {90: "h100", 80: "a100"}

TENSOR_EFFICIENCY = 0.8
MEMORY_EFFICIENCY = 0.9
ISSUE_EFFICIENCY = 0.75
LOAD_LATENCY = 600
LAUNCH_US = 2.0
L2_BYTES_PER_CLOCK = 64
ISSUE_PER_CLOCK = 4
SFU_PER_CLOCK = 16


def mma_flops(opcode):
    """FLOPs of one tensor-core instruction as issued by one warp: HGMMA.64x64x16 is a warpgroup
    (4 warps) instruction, so a quarter of 2*64*64*16 per warp; HMMA.16816 2*16*8*16 per warp."""
    parts = opcode.split(".")
    shape = parts[1] if len(parts) > 1 else ""
    if parts[0] == "HGMMA":
        m, n, k = (int(v) for v in shape.split("x"))
        return 2 * m * n * k / 4
    digits = {"16816": (16, 8, 16), "1688": (16, 8, 8), "884": (8, 8, 4), "16832": (16, 8, 32),
              "168": (16, 8, 8), "1684": (16, 8, 4)}.get(shape)
    if digits is None:
        return 0.0
    m, n, k = digits
    return 2 * m * n * k


def occupancy(card, warps, registers, shared):
    """CTAs that fit on one SM at once."""
    regs_per_warp = math.ceil(registers * 32 / 256) * 256
    limits = [card.ctas_per_sm, card.warps_per_sm // warps,
              card.registers_per_sm // max(regs_per_warp * warps, 1)]
    if shared:
        limits.append(card.shared_per_sm // (shared + 1024))  # 1 KB reserved per CTA
    return max(0, min(limits))


def precision_of(dtype_name):
    """The datasheet peak a floor uses: bf16/fp16/tf32 tensor cores, fp32 FMA, fp64."""
    return dtype_name if dtype_name in ("bf16", "fp16", "tf32", "fp64") else "fp32"


def torch_kernels_us(card, count, nbytes):
    """The other torch kernels of a step (casts, copies, pads, the loss): each a launch plus its
    tensors' bytes at the achievable bandwidth. Their compute is ignored: a lower bound."""
    return count * LAUNCH_US + 1e6 * nbytes / (card.bandwidth * MEMORY_EFFICIENCY)


def floor_us(card, flops, min_bytes, precision):
    """Roofline floor: the larger of FLOPs over the datasheet peak and bytes over bandwidth."""
    return 1e6 * max(flops / card.peak_flops[precision] if flops else 0.0,
                     min_bytes / card.bandwidth)


def estimate(card, facts, ctas, warps, trips, flops, min_bytes, precision, workspace_bytes=0,
             tail_bytes=0):
    """The model's time (us) for one launch, its binding limit and the terms (a dict);
    `workspace_bytes` (a split reduction's partials, written and read back) add to the memory
    term, not to the floor; `tail_bytes` (one program's reads after its main loop) add a serial
    tail."""
    occ = occupancy(card, warps, facts["registers"], facts["shared_bytes"])
    if occ == 0:
        return dict(estimate_us=math.inf, bound="does not fit", ctas_per_sm=0, waves=math.inf)
    per_sm = math.ceil(ctas / card.sms)
    rounds = math.ceil(per_sm / occ)
    loop = facts.get("nest_instructions") or facts["loop_instructions"]  # (nested: see sass.py)
    instr = warps * (loop * trips + facts["instructions"] - loop)
    mufu = warps * (facts["loop_mufu"] * trips + facts["kernel_mufu"] - facts["loop_mufu"])
    loop_mma = sum(mma_flops(op) for op in facts["loop_mma"]) * warps
    other_mma = (sum(mma_flops(op) for op in facts["kernel_mma"]) * warps - loop_mma)
    per_program_mma = loop_mma * trips + other_mma
    tc_rate = card.tensor_flops_per_clock.get(precision, 0)
    terms = {
        "tensor": per_sm * per_program_mma / (tc_rate * TENSOR_EFFICIENCY * card.clock_hz)
        if per_program_mma and tc_rate else 0.0,
        "issue": per_sm * instr / (ISSUE_PER_CLOCK * ISSUE_EFFICIENCY * card.clock_hz),
        "sfu": per_sm * mufu * 32 / (SFU_PER_CLOCK * card.clock_hz),
        "memory": (min_bytes + workspace_bytes) / (card.bandwidth * MEMORY_EFFICIENCY),
        "latency": rounds * max(trips, 1) * LOAD_LATENCY
        / (card.clock_hz * (max(facts["stages"] - 1, 1) if facts["async_loads"] else 1)),
    }
    bound = max(terms, key=terms.get)
    tail = tail_bytes / (L2_BYTES_PER_CLOCK * card.clock_hz)
    useful = flops / per_program_mma / ctas if per_program_mma and ctas else None
    return dict(estimate_us=1e6 * (terms[bound] + tail) + LAUNCH_US, bound=bound, ctas_per_sm=occ,
                waves=ctas / (occ * card.sms), mma_useful=useful,
                terms_us={**{k: round(1e6 * v, 2) for k, v in terms.items()},
                          "tail": round(1e6 * tail, 2)})
