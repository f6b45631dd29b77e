"""Range-checked argparse types: a flag value out of range ends the run at parse time, before anything loads.

Each factory returns a `type=` for add_argument whose error is argparse.ArgumentTypeError naming the valid range,
so argparse prints `prog: error: argument --batch-size: 0 is out of range (give an integer >= 1)` and exits 2.
Only the standard library is imported here: parsing flags must stay cheap.
"""

import argparse
import math
import os

__all__ = ["integer", "count", "switch", "seed", "number", "fraction", "choice", "output_file", "at_most"]


class _Range:
    """A type= that converts text with `kind` and keeps it in [low, high] (open ends when low_open/high_open)."""

    def __init__(self, kind, low=None, high=None, low_open=False, high_open=False):
        self.kind, self.low, self.high, self.low_open, self.high_open = kind, low, high, low_open, high_open
        self.__name__ = kind.__name__  # argparse names the type by it in its own messages

    def describe(self):
        """The valid range in words, e.g. 'an integer >= 1' or 'a number in [0, 1)'."""
        noun = "an integer" if self.kind is int else "a number"
        low, high = (v if v is None or isinstance(v, int) else f"{v:g}" for v in (self.low, self.high))
        if self.low is not None and self.high is not None:
            left, right = "(" if self.low_open else "[", ")" if self.high_open else "]"
            return f"{noun} in {left}{low}, {high}{right}"
        if self.low is not None:
            return f"{noun} {'>' if self.low_open else '>='} {low}"
        if self.high is not None:
            return f"{noun} {'<' if self.high_open else '<='} {high}"
        return noun

    def __call__(self, text):
        try:
            value = self.kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {self.describe()}") from None
        low_bad = self.low is not None and (value <= self.low if self.low_open else value < self.low)
        high_bad = self.high is not None and (value >= self.high if self.high_open else value > self.high)
        if low_bad or high_bad or not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"{text} is out of range (give {self.describe()})")
        return value

    def __repr__(self):
        return f"<{self.describe()}>"


def integer(min=None, max=None):
    """An int flag within [min, max] (either end may be None: unbounded)."""
    return _Range(int, min, max)


def count(min=1, max=None):
    """An int flag that counts things: at least `min` (1 unless given)."""
    return _Range(int, min, max)


def switch():
    """A 0/1 flag (MXNet's int switches)."""
    return _Range(int, 0, 1)


def seed():
    """A random seed: an int in [0, 2**32 - 1], what numpy and torch both take."""
    return _Range(int, 0, 2**32 - 1)


def number(min=None, max=None, above=None, below=None):
    """A finite float flag within [min, max]; above/below give open ends instead (e.g. below=1 for [0, 1))."""
    low, high = min if above is None else above, max if below is None else below
    return _Range(float, low, high, low_open=above is not None, high_open=below is not None)


def fraction(below=False):
    """A float flag in [0, 1], or in [0, 1) with below=True (a decay or a smoothing that must not reach 1)."""
    return number(min=0, below=1) if below else number(min=0, max=1)


def choice(*names):
    """A flag that takes one of `names`; any other value is an error that lists them."""

    def check(text):
        if text not in names:
            raise argparse.ArgumentTypeError(f"{text!r} is not one of: {', '.join(names)}")
        return text

    check.__name__ = "choice"
    return check


def output_file(stdout=False, create=False):
    """A path to write a file to: not a folder, its folder existing and writable ('-' too when stdout=True);
    create=True: a missing folder is fine when it can be made (the caller makes it, as training makes its prefix's)."""

    def check(text):
        if stdout and text == "-":
            return text
        if os.path.isdir(text):
            raise argparse.ArgumentTypeError(f"{text} is a folder; give a file name to write")
        folder = os.path.dirname(os.path.abspath(text))
        while create and not os.path.exists(folder):  # the nearest part of the path that exists decides
            folder = os.path.dirname(folder)
        if not os.path.isdir(folder):
            what = "is a file, not a folder" if os.path.exists(folder) else "does not exist"
            raise argparse.ArgumentTypeError(f"folder {folder} {what}; create it or pick another path")
        if not os.access(folder, os.W_OK | os.X_OK):
            raise argparse.ArgumentTypeError(f"folder {folder} is not writable; pick another path")
        return text

    check.__name__ = "output file"
    return check


def at_most(parser, args, name, bound):
    """args, after parser.error (exit 2) if flag `name` exceeds flag `bound` (e.g. top_k, num_classes) when both set."""
    value, limit = getattr(args, name, None), getattr(args, bound, None)
    if value is not None and limit is not None and value > limit:
        flag, other = ("--" + n.replace("_", "-") for n in (name, bound))
        parser.error(f"argument {flag}: {value} is more than {other} {limit} (give at most {limit})")
    return args


def load_epoch(text):
    """argparse type of a --load-epoch that loads weights: an epoch number (>= 0) or best (PREFIX-best.json's)."""
    if text == "best":
        return text
    try:
        return integer(min=0)(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"{text!r} is neither an epoch number (>= 0) nor best") from None


load_epoch.__name__ = "epoch"
