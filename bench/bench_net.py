"""Benchmark: one training step (forward, cross-entropy, backward, SGD update) and one inference
pass of a compiled spec, triton backend against the torch backend (cuDNN/cuBLAS), same weights,
same run, same card.

    python bench/bench_net.py --out results/net.csv                 # alexnet, batch 128, bf16
    python bench/bench_net.py --smoke --out /tmp/net.csv           # alexnet-small on CPU
"""

import torch
import torch.nn.functional as TF

import tritonalex
from tritonalex.bench import compare, parser, require_cuda, run_info, write_csv_atomically
from tritonalex.compiler import stages
from tritonalex.compiler.summary import summarize


def main(argv=None):
    options = parser(__doc__)
    options.add_argument("--spec", default="alexnet")
    options.set_defaults(dtypes=["bfloat16"])
    args = options.parse_args(argv)
    require_cuda(args, "bench_net.py")
    if args.smoke:
        args.spec, args.batch, args.dtypes = "alexnet-small", 2, ["float32"]
    device = "cuda" if torch.cuda.is_available() else "cpu"
    spec = tritonalex.load_spec(args.spec)
    _, totals = summarize(spec, list(stages(spec))[-1][1], batch=args.batch)
    info = run_info(args.batch)
    rows = []
    for dtype in [getattr(torch, d) for d in args.dtypes]:
        models = {}
        for backend in ("tritonalex", "torch"):
            torch.manual_seed(0)
            models[backend] = tritonalex.compile(
                spec, backend="triton" if backend == "tritonalex" else "torch", devices=device).to(dtype)
        models["tritonalex"].load_state_dict(models["torch"].state_dict())
        x = torch.randn(args.batch, spec.channels, spec.size, spec.size, device=device, dtype=dtype)
        labels = torch.randint(0, 10, (args.batch,), device=device)
        optimizers = {k: torch.optim.SGD(m.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
                      for k, m in models.items()}

        def train_step(name):
            model, opt = models[name], optimizers[name]
            opt.zero_grad(set_to_none=True)
            TF.cross_entropy(model(x).float(), labels).backward()
            opt.step()

        def infer(name):
            with torch.no_grad():
                models[name].eval()(x)
            models[name].train()

        flops = totals["forward_flops"] * args.batch
        weights = totals["parameters"] * x.element_size()
        acts = totals["activation_bytes"] // 4 * x.element_size()
        for pass_, fn, mult, bytes_ in (("inference", infer, 1, weights + acts),
                                        ("training step", train_step, 3, 4 * weights + 3 * acts)):
            steps = {k: (lambda k=k, fn=fn: fn(k)) for k in models}
            rows += compare(info, spec.name, dtype, "nchw", pass_, steps, flops * mult, bytes_,
                            args.smoke)
            write_csv_atomically(rows, args.out)
    print(f"wrote {len(rows)} rows to {args.out}")


if __name__ == "__main__":
    main()
