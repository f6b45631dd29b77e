"""The byte-level parts of a checkpoint: tensor checksums, safetensors metadata, nested state, the metrics file.

common/checkpoint.py names and writes the files; this module says what is inside them.
"""

import hashlib
import json

import torch

from common.util import UserError

DIGEST_KEY = "tensors_sha256"  # in the safetensors metadata of .params and .states; older files have none


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
