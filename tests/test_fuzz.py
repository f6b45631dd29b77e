"""Fuzz: damaged .rec/.idx files and checkpoint metadata, random truncations and byte flips from a fixed seed.

Every case must end in one of two ways: a clean result (exit 0, with what was skipped counted), or a user error
(one line, exit 2 at the command line: here, UserError). Any other exception is a traceback a user would see;
a case that runs past its time limit is a hang. Readers never write, so no file may appear or change either.
The cases run in-process (the entry points' own functions), so a few hundred take seconds, not minutes.
"""

import json
import shutil
import signal
from collections import Counter

import numpy as np
import pytest
import torch

import symbols
from common import checkpoint, data, modelzoo, recordio
from common.util import UserError
from tests.test_data import make_args, random_images, write_rec

SEED = 20261203
REC_CASES = 160
CKPT_CASES = 160
LIMIT_S = 20


class Hang(Exception):
    """A case ran past LIMIT_S."""


def _alarm(signum, frame):
    raise Hang()


def run_case(fn, label):
    """fn()'s outcome ('clean' or 'skipped'), or 'user-error'; AssertionError naming the case for any other
    exception (a traceback) or a hang."""
    old = signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(LIMIT_S)
    try:
        return fn()
    except UserError as err:
        assert "\n" not in str(err), f"a user error of several lines: {err}"
        return "user-error"
    except Hang:
        raise AssertionError(f"{label}: hang (over {LIMIT_S} s)") from None
    except Exception as err:  # noqa: BLE001 - the point of the test: name the case that would show a traceback
        raise AssertionError(f"{label}: {type(err).__name__}: {err}") from err
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def mutate(raw, rng):
    """A truncation, a few byte flips, or both, of raw bytes."""
    raw = bytearray(raw)
    kind = rng.integers(3)
    if kind in (0, 2) and raw:
        raw = raw[: int(rng.integers(0, len(raw)))]
    if kind in (1, 2) and raw:
        for pos in rng.integers(0, len(raw), int(rng.integers(1, 9))):
            raw[pos] ^= int(rng.integers(1, 256))
    return bytes(raw)


def snapshot(folder):
    """{name: bytes} of every file in folder."""
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


@pytest.fixture(scope="module")
def rec_pristine(tmp_path_factory):
    """A small .rec/.idx: 12 JPEGs, a multi-label record and a header-only record."""
    folder = tmp_path_factory.mktemp("rec")
    extra = [
        (
            recordio.IRHeader(2, [1.0, 0.0], 90, 0),
            recordio.pack_img(recordio.IRHeader(0, 0, 0, 0), random_images(1)[0]),
        ),
        (recordio.IRHeader(0, 0, 91, 0), b""),
    ]
    write_rec(folder / "d", random_images(12, 24, 24), [k % 3 for k in range(12)], extra=extra)
    return {name: (folder / name).read_bytes() for name in ("d.rec", "d.idx")}


def read_everything(rec, idx):
    """--test-io's path: open the data as training opens it and decode every batch; count what was skipped."""
    args = make_args("--data-train", rec, "--data-train-idx", idx, "--image-shape", "3,24,24", "--num-classes", "3")
    train, _ = data.get_rec_iter(args)
    seen = sum(len(x) for x, _ in train)
    assert seen + train.bad_images <= 13
    return "skipped" if train.bad_images or seen < 13 else "clean"


def test_damaged_rec_and_idx_end_clean_or_in_one_line(tmp_path, rec_pristine):
    rng = np.random.default_rng(SEED)
    outcomes = Counter()
    for case in range(REC_CASES):
        work = tmp_path / f"c{case}"
        work.mkdir()
        target = ("d.rec", "d.idx")[case % 2]
        for name, raw in rec_pristine.items():
            (work / name).write_bytes(mutate(raw, rng) if name == target else raw)
        before = snapshot(work)
        result = run_case(lambda w=work: read_everything(str(w / "d.rec"), str(w / "d.idx")), f"case {case} {target}")
        outcomes[result] += 1
        assert snapshot(work) == before, f"case {case}: a reader changed the files"
        shutil.rmtree(work)
    print(f"rec fuzz: {REC_CASES} cases, {dict(outcomes)}")
    assert sum(outcomes.values()) == REC_CASES


@pytest.fixture(scope="module")
def ckpt_pristine(tmp_path_factory):
    """A one-epoch mlp checkpoint (symbol, params, states), as bytes."""
    folder = tmp_path_factory.mktemp("ck")
    prefix = str(folder / "m")
    checkpoint.write_symbol(prefix, "mlp", {"num_classes": 3, "image_shape": "3,2,2"}, {"image_shape": [3, 2, 2]})
    net = symbols.get_symbol("mlp", num_classes=3, image_shape="3,2,2")
    checkpoint.save_params(prefix, 1, net)
    weights = {k: v.clone() for k, v in net.state_dict().items()}
    opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
    net(torch.zeros(2, 3, 2, 2)).sum().backward()
    opt.step()
    states = {"epoch": 1, "step": 3, "optimizer": opt.state_dict(), "rng": {"cpu": torch.get_rng_state()}}
    checkpoint.save_states(prefix, 1, states)
    files = {p.name: p.read_bytes() for p in folder.iterdir()}
    return files, {"params": weights, "rng": states["rng"]["cpu"]}


def load_everything(prefix, pristine):
    """What score.py and a resume read: the network by its symbol file and weights, and the training state.

    A load that succeeds must give the pristine weights and state: a damaged file that loads silently is a failure.
    """
    model, info = modelzoo.load_model(prefix, 1)
    model(torch.zeros(1, *info["preprocess"].get("image_shape", [3, 2, 2])))
    for name, value in model.state_dict().items():
        assert torch.equal(value, pristine["params"][name]), f"{name} loaded damaged, without a word"
    states = checkpoint.load_states(prefix, 1)
    assert json.dumps(states["step"]) == "3" and torch.equal(states["rng"]["cpu"], pristine["rng"])
    return "clean"


def test_damaged_checkpoints_end_clean_or_in_one_line(tmp_path, ckpt_pristine):
    rng = np.random.default_rng(SEED + 1)
    outcomes = Counter()
    files, pristine = ckpt_pristine
    names = sorted(files)
    for case in range(CKPT_CASES):
        work = tmp_path / f"c{case}"
        work.mkdir()
        target = names[case % len(names)]
        for name, raw in files.items():
            (work / name).write_bytes(mutate(raw, rng) if name == target else raw)
        before = snapshot(work)
        result = run_case(lambda w=work: load_everything(str(w / "m"), pristine), f"case {case} {target}")
        outcomes[result] += 1
        assert snapshot(work) == before, f"case {case}: loading changed the files"
        shutil.rmtree(work)
    print(f"checkpoint fuzz: {CKPT_CASES} cases, {dict(outcomes)}")
    assert sum(outcomes.values()) == CKPT_CASES
