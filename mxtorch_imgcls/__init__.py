"""The installed suite's console commands: mxtorch-train-mnist, mxtorch-im2rec, ... (`pip install mxtorch-imgcls`).

A checkout keeps MXNet's layout (train_*.py, common/, symbols/, tools/, data/ at the top, run as `python
train_mnist.py`). An installed wheel holds that same tree inside this package, so nothing named common, symbols,
tools or data lands among a user's top-level packages; each command puts this package's tree first on sys.path
and runs its script as `python SCRIPT` would (an editable install runs the checkout's scripts the same way).
"""

import os
import runpy
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
# an installed wheel: the scripts beside this file; a checkout (or editable install): the repository root above it
ROOT = HERE if os.path.isfile(os.path.join(HERE, "train_mnist.py")) else os.path.dirname(HERE)

# command name (after the mxtorch- prefix) -> script, relative to ROOT
SCRIPTS = {
    "train-mnist": "train_mnist.py",
    "train-cifar10": "train_cifar10.py",
    "train-imagenet": "train_imagenet.py",
    "fine-tune": "fine-tune.py",
    "score": "score.py",
    "predict": "predict.py",
    "benchmark": "benchmark.py",
    "benchmark-score": "benchmark_score.py",
    "im2rec": "tools/im2rec.py",
    "rec2idx": "tools/rec2idx.py",
    "verify-rec": "tools/verify_rec.py",
    "launch": "tools/launch.py",
    "export": "tools/export.py",
    "convert": "tools/convert_mxnet.py",
}


def run(command):
    """Run the script of `command` as its own program: argv, sys.path and __main__ as `python SCRIPT` gives them."""
    script = os.path.join(ROOT, SCRIPTS[command])
    sys.argv[0] = script  # error lines name the script, as in a checkout
    sys.path.insert(0, ROOT)
    runpy.run_path(script, run_name="__main__")


def _command(name):
    def main():
        run(name)

    main.__name__ = name.replace("-", "_")
    main.__doc__ = f"mxtorch-{name}: {SCRIPTS[name]}"
    return main


for _name in SCRIPTS:
    globals()[_name.replace("-", "_")] = _command(_name)
