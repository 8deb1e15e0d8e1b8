"""Argument types and the parser class shared by every `tritonalex` subcommand.

Bad values are refused while the command line is parsed, before any work, each as one line
`tritonalex <command>: error: argument --flag: ...` with exit status 2 (argparse's convention,
without its usage block).
"""

import argparse
import math


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors (subparsers inherit the class)."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message}\n")


def integer(low=None, high=None):
    """An argparse type: an int within [low, high]."""
    def parse(text):
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if low is not None and value < low:
            raise argparse.ArgumentTypeError(f"must be at least {low}, got {value}")
        if high is not None and value > high:
            raise argparse.ArgumentTypeError(f"must be at most {high}, got {value}")
        return value
    return parse


def number(low=None, high=None, low_open=False, high_open=False):
    """An argparse type: a finite float within the bounds (open where asked)."""
    def parse(text):
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"must be finite, got {text}")
        if low is not None and (value < low or (low_open and value == low)):
            raise argparse.ArgumentTypeError(f"must be {'>' if low_open else '>='} {low}, got {value}")
        if high is not None and (value > high or (high_open and value == high)):
            raise argparse.ArgumentTypeError(f"must be {'<' if high_open else '<='} {high}, "
                                             f"got {value}")
        return value
    return parse


positive = integer(1)
non_negative = integer(0)
