"""The ``tritonalex`` command."""

import argparse
import os
import subprocess
import sys


def _kernels(args):
    # The compile check needs Triton's real compiler, not the interpreter that importing
    # tritonalex turns on without CUDA, so it runs in its own process with TRITON_INTERPRET=0.
    env = dict(os.environ, TRITON_INTERPRET="0")
    return subprocess.call([sys.executable, "-m", "tritonalex.kernels.aot"], env=env)


def build_parser():
    parser = argparse.ArgumentParser(prog="tritonalex", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    kernels = commands.add_parser(
        "kernels",
        help="compile every kernel's GPU configs for sm_80 and sm_90 ahead of time (no GPU needed)",
        description="Compile every kernel in tritonalex.kernels with each of its GPU tile configs "
                    "for sm_80 and sm_90 and print registers, spills, shared memory and wgmma use. "
                    "Exits 1 if any config fails to compile or spills registers.")
    kernels.set_defaults(run=_kernels)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
