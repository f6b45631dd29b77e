"""The files of a checkpoint: their names, which epochs are saved, the best one (PREFIX-best.json), --keep-last,
and the byte-level parts: tensor checksums, safetensors metadata, nested state, the metrics file.

common/checkpoint.py writes and reads the weights and training state; this module says where they are and what is
inside them.
"""

import glob
import hashlib
import json
import logging
import os
import re

import torch

from common.util import UserError, atomic_write

BEST = "best"  # --load-epoch best: the epoch PREFIX-best.json records

DIGEST_KEY = "tensors_sha256"  # in the safetensors metadata of .params and .states; older files have none


def params_path(prefix, epoch):
    """The parameters file of one epoch."""
    return f"{prefix}-{epoch:04d}.params"


def states_path(prefix, epoch):
    """The training-state file of one epoch."""
    return f"{prefix}-{epoch:04d}.states"


def best_path(prefix):
    """PREFIX-best.json: the saved epoch with the best Validation-accuracy, and that accuracy."""
    return f"{prefix}-best.json"


def saved_epochs(prefix, complete=True):
    """Epochs saved under prefix, ascending: with both .params and .states (complete), or with a .params file."""
    found = []
    for path in glob.glob(glob.escape(prefix) + "-*.params"):
        m = re.fullmatch(r"(\d{4,})\.params", path[len(prefix) + 1 :])
        if m and (not complete or os.path.isfile(states_path(prefix, int(m.group(1))))):
            found.append(int(m.group(1)))
    return sorted(found)


def read_best(prefix):
    """(epoch, accuracy) that PREFIX-best.json records, or None when there is no such file; a damaged one is named."""
    path = best_path(prefix)
    try:
        with open(path, encoding="utf-8") as f:
            doc = json.load(f)
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise UserError(f"{path} is damaged ({err}); delete it, or pass --load-epoch N") from None
    epoch, acc = (doc.get("epoch"), doc.get("validation-accuracy")) if isinstance(doc, dict) else (None, None)
    if type(epoch) is not int or epoch < 0 or type(acc) not in (int, float):
        raise UserError(f"{path} holds no epoch and validation-accuracy; delete it, or pass --load-epoch N")
    return epoch, float(acc)


def best_epoch(prefix):
    """The epoch of --load-epoch best; a UserError naming the prefix when none is recorded or its file is gone."""
    best = read_best(prefix)
    if best is None:
        raise UserError(
            f"--load-epoch best: no best checkpoint is recorded under {prefix} (no {best_path(prefix)}: training "
            "writes it only with validation data); train with --data-val, or pass --load-epoch N"
        )
    if not os.path.isfile(params_path(prefix, best[0])):
        raise UserError(
            f"--load-epoch best: {best_path(prefix)} names epoch {best[0]} but {params_path(prefix, best[0])} is "
            "gone; pass --load-epoch N"
        )
    return best[0]


def note_best(prefix, epoch, accuracy, log):
    """Record the saved `epoch` in PREFIX-best.json when its Validation-accuracy beats the recorded one (log it)."""
    if accuracy is None:  # no validation data, or none of it decoded
        return
    best = read_best(prefix)
    # A record of this or a later epoch is of a run now redone from an earlier epoch (resume): its files are replaced.
    if best is not None and best[0] < epoch and best[1] >= accuracy:
        return
    path = best_path(prefix)
    try:
        atomic_write(path, json.dumps({"epoch": epoch, "validation-accuracy": accuracy}) + "\n", mode="w")
    except OSError as err:
        raise UserError(f"cannot write {path}: {err.strerror or err}; free space or fix the folder") from None
    log(f"Best checkpoint is now epoch {epoch}: Validation-accuracy={accuracy:f} (recorded in {path})")


def keep_last(prefix, epoch, keep, log):
    """--keep-last: remove the .params and .states of saved epochs up to `epoch` but the newest `keep` and the best."""
    if not keep:
        return
    done = [e for e in saved_epochs(prefix, complete=False) if e <= epoch]  # later ones: an older run's, replaced
    best = read_best(prefix)
    kept = set(done[-keep:]) | {epoch} | ({best[0]} if best else set())
    removed = []
    for e in (e for e in done if e not in kept):
        try:  # .states first: a kill in between leaves a .params that the next save still finds and removes
            for path in (states_path(prefix, e), params_path(prefix, e)):
                if os.path.exists(path):
                    os.remove(path)
            removed.append(e)
        except OSError as err:  # the run goes on: a checkpoint left behind costs disk, not the training
            logging.warning("--keep-last %d: cannot remove %s: %s", keep, params_path(prefix, e), err.strerror or err)
    if removed:
        names = ", ".join(os.path.basename(params_path(prefix, e)) for e in removed)
        log(f"--keep-last {keep}: removed {names} and their .states")


def tensors_digest(tensors):
    """SHA-256 over the names, dtypes, shapes and bytes of a dict of tensors (in name order), as hex."""
    h = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].detach().contiguous()
        h.update(f"{name}\0{t.dtype}\0{tuple(t.shape)}\0".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy())
    return h.hexdigest()


def file_metadata(raw):
    """The __metadata__ of safetensors bytes whose header safetensors has already accepted."""
    n = int.from_bytes(raw[:8], "little")
    return json.loads(bytes(raw[8 : 8 + n])).get("__metadata__") or {}


def check_digest(path, raw, tensors):
    """UserError when the file records a checksum its tensors do not have (a flipped byte); none: accepted."""
    want = file_metadata(raw).get(DIGEST_KEY)
    if want is not None and want != tensors_digest(tensors):
        raise UserError(
            f"{path}: the tensor bytes do not match the SHA-256 saved with them, so the file is damaged; "
            "restore it or use another epoch"
        )


def split_tensors(obj, key, tensors):
    """Move every tensor of a nested dict/list into `tensors` (named by its path); return the JSON-able rest."""
    if isinstance(obj, torch.Tensor):
        tensors[key] = obj.detach().to("cpu", copy=True).contiguous()
        return {"__tensor__": key}
    if isinstance(obj, dict):
        return {
            "__dict__": [
                [split_tensors(k, f"{key}.k{i}", tensors), split_tensors(v, f"{key}.{i}", tensors)]
                for i, (k, v) in enumerate(obj.items())
            ]
        }
    if isinstance(obj, list | tuple):
        return [split_tensors(v, f"{key}.{i}", tensors) for i, v in enumerate(obj)]
    return obj


def join_tensors(obj, tensors):
    """Inverse of split_tensors."""
    if isinstance(obj, dict) and "__tensor__" in obj:
        return tensors[obj["__tensor__"]]
    if isinstance(obj, dict) and "__dict__" in obj:
        return {join_tensors(k, tensors): join_tensors(v, tensors) for k, v in obj["__dict__"]}
    if isinstance(obj, list):
        return [join_tensors(v, tensors) for v in obj]
    return obj


def read_metrics(path):
    """(records, whether every line was whole) of a metrics file; a line torn by a kill is left out."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except FileNotFoundError:
        return [], True
    except (OSError, UnicodeDecodeError) as err:
        raise UserError(f"cannot read {path}: {getattr(err, 'strerror', None) or err}") from None
    records, whole = [], text == "" or text.endswith("\n")
    for line in filter(str.strip, text.splitlines()):
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            record = None
        if isinstance(record, dict) and isinstance(record.get("epoch"), int):
            records.append(record)
        else:
            whole = False
    return records, whole
