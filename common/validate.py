"""Checks of what a checkpoint's files say, made before anything is built from them.

A damaged or crafted PREFIX-symbol.json or .states must end in one line naming the file and the field, not in
a traceback or in an attempt to allocate terabytes: types and sizes are checked here first.
"""

import numbers

import torch

from common.util import UserError

MAX_CLASSES = 1_000_000  # more outputs than any classifier has; 1e11 of them would ask for terabytes
MAX_SIDE = 16384  # pixels per image side; a larger one is a damaged record (3x100000x100000 is 120 GB)
RESTORE = "restore the file or pass another prefix"


def fail(path, field, what):
    """Raise the UserError for one bad field of one file."""
    raise UserError(f"{path}: field {field!r} {what}; {RESTORE}")


def class_count(path, field, value):
    """A class count: a whole number from 1 to MAX_CLASSES."""
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_CLASSES:
        fail(path, field, f"is {value!r}, not a whole number of classes from 1 to {MAX_CLASSES:,}")
    return value


def image_shape(path, field, value):
    """An image shape, 'C,H,W' or [C, H, W]: C 1 or 3, each side from 1 to MAX_SIDE; returned as a tuple."""
    parts = value.strip("()[] ").split(",") if isinstance(value, str) else value
    try:
        shape = tuple(int(v) if not isinstance(v, bool | float) else None for v in parts)
    except (TypeError, ValueError):
        shape = ()
    if len(shape) != 3 or None in shape or shape[0] not in (1, 3) or not all(1 <= s <= MAX_SIDE for s in shape[1:]):
        fail(path, field, f"is {value!r}, not C,H,W with C 1 or 3 and each side from 1 to {MAX_SIDE}")
    return shape


def of_type(path, field, value, types, what, optional=True):
    """value itself, when it is one of `types` (or None where optional)."""
    if (value is None and not optional) or (value is not None and not isinstance(value, types)):
        fail(path, field, f"is {type(value).__name__} {str(value)[:40]!r}, not {what}")
    return value


def fine_tune_steps(path, steps):
    """The fine_tune list of a symbol file: dicts with the replacement's class counts, cut layer and shape."""
    of_type(path, "fine_tune", steps, list, "a list of classifier replacements")
    for i, step in enumerate(steps or ()):
        field = f"fine_tune[{i}]"
        of_type(path, field, step, dict, "an object", optional=False)
        for key in ("pretrained_num_classes", "num_classes"):
            class_count(path, f"{field}.{key}", step.get(key))
        of_type(path, f"{field}.layer_before_fullc", step.get("layer_before_fullc"), str, "a layer name", False)
        image_shape(path, f"{field}.image_shape", step.get("image_shape"))
        of_type(path, f"{field}.pretrained_source", step.get("pretrained_source"), str, "a string")


def arguments(path, args):
    """A symbol file's network arguments: an object whose class count and image shape are sane."""
    of_type(path, "arguments", args, dict, "an object of get_symbol arguments")
    args = args or {}
    if args.get("num_classes") is not None:
        class_count(path, "arguments.num_classes", args["num_classes"])
    if args.get("image_shape") is not None:
        image_shape(path, "arguments.image_shape", args["image_shape"])


def preprocess(path, pre):
    """A symbol file's preprocessing record: shape, and 3 numbers each for mean and std."""
    of_type(path, "preprocess", pre, dict, "an object")
    pre = pre or {}
    if pre.get("image_shape") is not None:
        image_shape(path, "preprocess.image_shape", pre["image_shape"])
    for key in ("rgb_mean", "rgb_std"):
        value = pre.get(key)
        ok = value is None or (
            isinstance(value, list)
            and len(value) == 3
            and all(isinstance(v, numbers.Real) and not isinstance(v, bool) for v in value)
        )
        if not ok:
            fail(path, f"preprocess.{key}", f"is {str(value)[:40]!r}, not a list of 3 numbers")


def symbol_doc(path, doc):
    """Check every field of one of the suite's PREFIX-symbol.json documents; return it."""
    if not isinstance(doc.get("network"), str) or not doc["network"]:
        fail(path, "network", f"is {str(doc.get('network'))[:40]!r}, not a network name")
    arguments(path, doc.get("arguments"))
    classes = of_type(path, "classes", doc.get("classes"), list, "a list of class names")
    if classes is not None and not all(isinstance(c, str) for c in classes):
        fail(path, "classes", "holds a value that is not a string")
    fine_tune_steps(path, doc.get("fine_tune"))
    preprocess(path, doc.get("preprocess"))
    return doc


def _tensor_or_none(path, field, value):
    if value is not None and not isinstance(value, torch.Tensor):
        fail(path, field, f"is {type(value).__name__}, not a tensor")


def states_doc(path, states):
    """Check the structure of a .states document (what resume_training reads) before anything uses it."""
    of_type(path, "states", states, dict, "an object of training state", optional=False)
    for key in ("epoch", "step"):
        value = states.get(key)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            fail(path, key, f"is {value!r}, not a count")
    opt = of_type(path, "optimizer", states.get("optimizer"), dict, "an optimizer state", optional=False)
    of_type(path, "optimizer.state", opt.get("state"), dict, "an object", optional=False)
    groups = of_type(path, "optimizer.param_groups", opt.get("param_groups"), list, "a list", optional=False)
    for i, group in enumerate(groups):
        of_type(path, f"optimizer.param_groups[{i}]", group, dict, "an object", optional=False)
    for key in ("scaler", "model", "ema", "schedule", "extra"):
        of_type(path, key, states.get(key), dict, "an object")
    rng = of_type(path, "rng", states.get("rng"), dict, "an object of RNG states", optional=False)
    cpu = rng.get("cpu")
    if not isinstance(cpu, torch.Tensor) or cpu.dtype != torch.uint8:
        fail(path, "rng.cpu", "is not a uint8 tensor")
    _tensor_or_none(path, "rng.cuda", rng.get("cuda"))
    return states
