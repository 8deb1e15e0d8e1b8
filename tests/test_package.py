"""Packaging and process-level behaviour: the interpreter switch, the CLI, the compile check."""

import os
import subprocess
import sys

import torch

from tritonalex.kernels import launch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def python(code, **env_changes):
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env.update(env_changes)
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          check=True)


SHOW_MODE = ("import logging; logging.basicConfig(level=logging.DEBUG);"
             "import tritonalex, os; print('MODE', os.environ.get('TRITON_INTERPRET'))")


def test_interpreter_switch_without_cuda():
    out = python(SHOW_MODE)
    if torch.cuda.is_available():
        assert "MODE None" in out.stdout
    else:
        assert "MODE 1" in out.stdout
        assert "TRITON_INTERPRET=1" in out.stderr  # said once, at DEBUG level
        assert out.stderr.count("Triton's interpreter") == 1


def test_user_setting_is_kept():
    assert "MODE 0" in python(SHOW_MODE, TRITON_INTERPRET="0").stdout


def test_kernels_package_maps_to_kernels_folder():
    import tritonalex.kernels

    assert os.path.samefile(os.path.dirname(tritonalex.kernels.__file__), os.path.join(ROOT, "kernels"))


def test_poison_fills_nan():
    assert torch.isnan(launch.empty((3, 2), torch.float32, "cpu")).all()


def test_every_package_is_listed_for_installation():
    """A subpackage missing from pyproject's list would vanish from a non-editable install."""
    import tomllib

    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        listed = set(tomllib.load(f)["tool"]["setuptools"]["packages"])
    found = {os.path.relpath(d, ROOT).replace(os.sep, ".")
             for d, _, files in os.walk(os.path.join(ROOT, "tritonalex")) if "__init__.py" in files}
    assert found | {"tritonalex.kernels"} == listed  # kernels/ installs as tritonalex.kernels
