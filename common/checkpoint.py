"""Checkpoints by prefix and epoch, as MXNet names them, in formats that never unpickle code.

  PREFIX-symbol.json   network name and arguments (enough to rebuild it) and the evaluation preprocessing
  PREFIX-%04d.params   the model's parameters and buffers (safetensors), names without wrapper prefixes
  PREFIX-%04d.states   optimizer, AMP scaler, EMA weights, RNG state, step and epoch: safetensors for the
                       tensors plus one JSON document in its metadata for everything else
  PREFIX-metrics.jsonl one line of metrics per epoch, and PREFIX-curve.png drawn from it
  PREFIX-best.json     the saved epoch with the best Validation-accuracy (--load-epoch best), when validated
Every file is written under a temporary name and renamed when complete, so a crash leaves the last good one.
"""

import dataclasses
import errno
import json
import logging
import os

import torch
from safetensors.torch import load, save

from common import figures, optim, options, validate
from common.checkpoint_files import (  # noqa: F401 - note_best, keep_last: checkpoint.* for fit.py
    BEST,
    DIGEST_KEY,
    best_epoch,
    check_digest,
    file_metadata,
    join_tensors,
    keep_last,
    note_best,
    params_path,
    read_metrics,
    saved_epochs,
    split_tensors,
    states_path,
    tensors_digest,
)
from common.networks import COSINE_KEY, network_arguments
from common.util import UserError, atomic_write, parse_floats, parse_shape, remove_stale_temps

WRAPPER_PREFIXES = ("module.", "_orig_mod.")
PEER_SUFFIX = "-peer"  # --mutual-learning 2: the second network's checkpoints are PREFIX-peer's (common/teachers.py)
STATES_KEY = "states_json"


def clean_name(name):
    """A parameter name without the DDP / torch.compile / EMA wrapper prefixes."""
    changed = True
    while changed:
        changed = False
        for p in WRAPPER_PREFIXES:
            if name.startswith(p):
                name, changed = name[len(p) :], True
    return name


def pick_epoch(prefix, epoch):
    """The epoch asked for (a number or best), or the last one with a .params file when none is given (inference)."""
    if epoch == BEST:
        return best_epoch(prefix)
    if epoch is not None:
        return int(epoch)
    epochs = saved_epochs(prefix, complete=False)
    if not epochs:
        raise UserError(f"no {prefix}-NNNN.params next to {prefix}-symbol.json; pass --load-epoch")
    return epochs[-1]


def resolve_load_epoch(prefix, load_epoch):
    """Turn --load-epoch (None, N, 'auto' or 'best') into the epoch to resume from, or None to start afresh."""
    if load_epoch is None or load_epoch == "":
        return None
    if not prefix:
        raise UserError("--load-epoch needs --model-prefix, the prefix the checkpoints were saved under")
    epochs = saved_epochs(prefix)
    if str(load_epoch) == "auto":
        if not epochs:
            logging.info("--load-epoch auto: no complete checkpoint %s-NNNN.params/.states; starting afresh", prefix)
            return None
        return epochs[-1]
    try:
        epoch = best_epoch(prefix) if str(load_epoch) == BEST else int(load_epoch)
    except ValueError:
        raise UserError(f"--load-epoch {load_epoch!r} is neither an epoch number nor 'auto' or 'best'") from None
    if epoch not in epochs:
        there = ", ".join(map(str, epochs)) or "none"
        raise UserError(
            f"no complete checkpoint {params_path(prefix, epoch)} (+ .states); epochs saved under {prefix}: {there}"
        )
    return epoch


def write_symbol(prefix, network, arguments, preprocess, classes=None, fine_tune=None, quantization=None):
    """Write PREFIX-symbol.json: how to rebuild the network and how to prepare an image for it."""
    # fine_tune: the classifier replacements of fine-tune.py, replayed in order (networks.rebuild) on the network
    # built from `arguments` with the first entry's pretrained_num_classes; arguments["num_classes"] is the final one.
    doc = {
        "format": "mxtorch-imgcls/1",
        "network": network,
        "arguments": arguments,
        "preprocess": preprocess,
        "classes": list(classes) if classes is not None else None,
    }
    if fine_tune:
        doc["fine_tune"] = list(fine_tune)
    if quantization:  # --qat: the engine it trained for; the trained quantization is in .states (common/qat.py)
        doc["qat"] = dict(quantization)
    atomic_write(f"{prefix}-symbol.json", json.dumps(doc, indent=2) + "\n", mode="w")


def read_json(path, hint="pass the --model-prefix the model was trained with"):
    """Read a JSON object from a file; a missing or malformed one is a UserError naming it (and the line)."""
    try:
        with open(path) as f:
            doc = json.load(f)
    except FileNotFoundError:
        raise UserError(f"{path} not found; {hint}") from None
    except json.JSONDecodeError as err:
        raise UserError(f"{path} line {err.lineno}: not valid JSON ({err.msg})") from None
    except (OSError, UnicodeDecodeError) as err:
        raise UserError(f"{path}: cannot read it ({err})") from None
    if not isinstance(doc, dict):
        raise UserError(f"{path} holds a JSON {type(doc).__name__}, not the object of a symbol file; {hint}")
    return doc


def read_symbol(prefix):
    """Read PREFIX-symbol.json back into a dict (it must name its network)."""
    path = f"{prefix}-symbol.json"
    doc = read_json(path)
    if not doc.get("network"):
        raise UserError(f"{path} names no network; it is damaged or not one of this suite's symbol files")
    return validate.symbol_doc(path, doc)


def model_tensors(model):
    """The model's state dict on the CPU, names cleaned, each tensor its own storage (safetensors needs it)."""
    return {clean_name(k): v.detach().to("cpu", copy=True).contiguous() for k, v in model.state_dict().items()}


def save_params(prefix, epoch, model):
    """Write PREFIX-%04d.params (safetensors, with the tensors' SHA-256 in its metadata) atomically."""
    tensors = model_tensors(model)
    meta = {"epoch": str(epoch), DIGEST_KEY: tensors_digest(tensors)}
    atomic_write(params_path(prefix, epoch), save(tensors, metadata=meta))


def load_params(path, model, network="the network", raw=None):
    """Load a .params file (or its bytes, raw) into model; a missing, extra or misshapen parameter is named."""
    try:
        if raw is None:
            with open(path, "rb") as f:
                raw = f.read()
        loaded = load(raw)
    except FileNotFoundError:
        raise UserError(f"{path} not found") from None
    except Exception as err:  # safetensors raises its own error types for a corrupt header
        raise UserError(f"{path} is not a safetensors parameter file ({err})") from None
    check_digest(path, raw, loaded)
    tensors = {clean_name(k): v for k, v in loaded.items()}
    own = {clean_name(k): v for k, v in model.state_dict().items()}
    for name, value in own.items():
        if name not in tensors:
            raise UserError(f"{path} does not fit {network}: parameter {name!r} is missing from the file")
        if tuple(tensors[name].shape) != tuple(value.shape):
            raise UserError(
                f"{path} does not fit {network}: parameter {name!r} has shape {tuple(tensors[name].shape)} "
                f"in the file but {tuple(value.shape)} in the network"
            )
    extra = sorted(set(tensors) - set(own))
    if extra:
        raise UserError(f"{path} does not fit {network}: parameter {extra[0]!r} is not in the network")
    with torch.no_grad():
        for name, value in unwrap(model).state_dict().items():
            value.copy_(tensors[clean_name(name)])


def unwrap(model):
    """The plain module under DDP / torch.compile wrappers."""
    while hasattr(model, "module") or hasattr(model, "_orig_mod"):
        model = getattr(model, "module", None) or model._orig_mod
    return model


def save_states(prefix, epoch, states):
    """Write PREFIX-%04d.states: a nested dict of tensors and plain values, as safetensors + JSON metadata."""
    tensors = {}
    doc = split_tensors(states, "s", tensors)
    meta = {STATES_KEY: json.dumps(doc), DIGEST_KEY: tensors_digest(tensors)}
    atomic_write(states_path(prefix, epoch), save(tensors, metadata=meta))


def load_states(prefix, epoch, raw=None):
    """Read PREFIX-%04d.states (or its bytes, raw) back into the nested dict save_states wrote."""
    path = states_path(prefix, epoch)
    try:
        if raw is None:
            with open(path, "rb") as f:
                raw = f.read()
        tensors = load(raw)
        states = join_tensors(json.loads(file_metadata(raw)[STATES_KEY]), tensors)
    except Exception as err:  # noqa: BLE001 - safetensors raises its own error type for damaged headers
        raise UserError(f"{path} is not a readable training-state file ({err}); resume from another epoch") from None
    check_digest(path, raw, tensors)
    return states


def append_metrics(prefix, record, network=None):
    """Add one epoch's metrics to PREFIX-metrics.jsonl and redraw PREFIX-curve.png from it.

    Append-only, flushed to disk, so a kill never loses a saved epoch's line. Only when the file holds lines of
    this or later epochs (a resumed run) or a torn line is it rewritten, atomically, without them.
    """
    path = f"{prefix}-metrics.jsonl"
    records, whole = read_metrics(path)
    kept = [r for r in records if r["epoch"] < record["epoch"]]
    line = json.dumps(record) + "\n"
    try:
        if whole and len(kept) == len(records):
            with open(path, "a", encoding="utf-8") as f:
                f.write(line)
                f.flush()
                os.fsync(f.fileno())
        else:
            atomic_write(path, "".join(json.dumps(r) + "\n" for r in kept) + line, mode="w")
        title = f"{prefix}" + (f" ({network})" if network else "")
        figures.plot_curves(f"{prefix}-curve.png", kept + [record], title)
    except OSError as err:
        raise UserError(
            f"cannot write {path} or its curve: {err.strerror or err}; free space or fix the folder"
        ) from None


def save_training(ctx, epoch):
    """Write PREFIX-%04d.params and .states for `epoch` epochs done; a full disk is a UserError."""
    prefix, cuda = ctx.args.model_prefix, ctx.device.type == "cuda"
    try:
        _save_training(ctx, prefix, epoch, cuda)
    except OSError as err:
        raise UserError(save_error(prefix, epoch, err)) from None
    ctx.log(f'Saved checkpoint to "{params_path(prefix, epoch)}"')


def save_error(prefix, epoch, err):
    """The one line for a checkpoint that could not be written: why, what is left, what to do."""
    good = [e for e in saved_epochs(prefix) if e < epoch]
    left = f"the last good checkpoint {params_path(prefix, good[-1])} is intact" if good else "no earlier one exists"
    todo = "free space on that disk" if err.errno in (errno.ENOSPC, errno.EDQUOT) else "make the folder writable"
    return (
        f"the weights of epoch {epoch} could not be saved to {params_path(prefix, epoch)} "
        f"({err.strerror or err}); {left}; {todo}, then resume with --load-epoch auto"
    )


def _save_training(ctx, prefix, epoch, cuda):
    """save_training's writes."""
    optimizer, peer = ctx.opt.state_dict(), getattr(ctx, "peer", None)
    if peer is not None:  # --mutual-learning 2: each network's .states holds its own part of the one optimizer
        optimizer, peer_optimizer = peer.split_optimizer(optimizer)
    states = {
        "epoch": epoch,
        "step": ctx.step,
        "model": ctx.raw.state_dict() if ctx.ema is not None else None,
        "optimizer": optimizer,
        "scaler": ctx.scaler.state_dict(),
        "ema": ctx.ema.state_dict() if ctx.ema is not None else None,
        "rng": {"cpu": torch.get_rng_state(), "cuda": torch.cuda.get_rng_state(ctx.device) if cuda else None},
        "schedule": ctx.schedule,
        "extra": {name: part.state_dict() for name, part in getattr(ctx, "extra_states", {}).items()},
    }
    if peer is not None:  # first: an epoch whose PREFIX files are complete has its peer's
        save_params(peer.prefix, epoch, peer.net)
        save_states(peer.prefix, epoch, dict(states, model=None, ema=None, optimizer=peer_optimizer))
    # With --ema the averaged weights are the model (validated, scored, exported); the trained ones resume.
    save_params(prefix, epoch, ctx.ema.module if ctx.ema is not None else ctx.raw)
    save_states(prefix, epoch, states)


def keep_peer(ctx):
    """--keep-last with --mutual-learning 2: the peer keeps the epochs network 1 kept, and no others."""
    peer = getattr(ctx, "peer", None)
    if peer is None or not ctx.args.keep_last:
        return
    kept = set(saved_epochs(ctx.args.model_prefix, complete=False))
    for e in (e for e in saved_epochs(peer.prefix, complete=False) if e not in kept):
        for path in (states_path(peer.prefix, e), params_path(peer.prefix, e)):
            try:
                if os.path.exists(path):
                    os.remove(path)
            except OSError as err:  # as keep_last: a file left behind costs disk, not the training
                logging.warning("--keep-last: cannot remove %s: %s", path, err.strerror or err)


def read_blobs(prefix, epoch):
    """The bytes of PREFIX-%04d.params and .states, for rank 0 to hand to workers on hosts without the files."""
    try:
        with open(params_path(prefix, epoch), "rb") as f, open(states_path(prefix, epoch), "rb") as g:
            return f.read(), g.read()
    except OSError as err:
        raise UserError(f"cannot read the checkpoint of epoch {epoch} under {prefix}: {err}") from None


def check_same_network(args, pretrained=None):
    """UserError when PREFIX-symbol.json (where present) records another network than the flags of this run build."""
    path = f"{args.model_prefix}-symbol.json"
    if not os.path.isfile(path):  # a worker on another host gets the weights from rank 0, not the files
        return
    doc = validate.symbol_doc(path, read_json(path))
    saved, now = doc.get("arguments") or {}, symbol_arguments(args, pretrained)
    if str(doc.get("network")).lower().replace("_", "-") != str(args.network).lower().replace("_", "-"):
        raise UserError(f"{path}: the checkpoint is a {doc.get('network')}, not --network {args.network}")
    if saved.get(COSINE_KEY) != now.get(COSINE_KEY):  # a cosine classifier has no bias: the weights differ
        was = f"--loss-type am-softmax --am-scale {saved[COSINE_KEY]}" if COSINE_KEY in saved else "--loss-type softmax"
        raise UserError(f"{path}: the checkpoint's classifier was trained with {was}; resume with the same flags")
    # The image shape may change between runs (the networks pool globally); every other argument must not.
    for key in sorted(set(saved) & set(now) - {"image_shape"}):
        if saved[key] != now[key]:
            flag = f" (--{key.replace('_', '-')} {saved[key]})" if key in vars(args) else ""
            raise UserError(
                f"{path}: the checkpoint's {args.network} has {key}={saved[key]!r} but this run builds "
                f"{key}={now[key]!r}; resume with the flags it was trained with{flag}"
            )


def resume_training(ctx, epoch, blobs=None):
    """Load the weights and training state of `epoch` (from blobs = read_blobs(...) when given); say what changed."""
    args, prefix = ctx.args, ctx.args.model_prefix
    blobs = blobs or (None, None)
    check_same_network(args, ctx.pretrained)
    load_params(params_path(prefix, epoch), ctx.raw, args.network, raw=blobs[0])
    states = validate.states_doc(states_path(prefix, epoch), load_states(prefix, epoch, raw=blobs[1]))
    peer = getattr(ctx, "peer", None)
    if peer is not None:  # --mutual-learning 2: the peer's weights, and its part of the optimizer joined to ours
        load_params(params_path(peer.prefix, epoch), peer.net, f"the peer ({args.network})")
        theirs = validate.states_doc(states_path(peer.prefix, epoch), load_states(peer.prefix, epoch))
        states["optimizer"] = peer.join_optimizer(states["optimizer"], theirs["optimizer"])
    try:
        _apply_states(ctx, states)
    except (RuntimeError, ValueError, KeyError, TypeError, IndexError) as err:  # torch's own load_state_dict errors
        raise UserError(
            f"{states_path(prefix, epoch)} does not fit this run's {args.network} and optimizer "
            f"({str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__}); "
            "resume from another epoch or start afresh"
        ) from None
    for g in ctx.opt.param_groups:  # the flags of this run, not of the saved one (older layouts: optim's hook)
        g["weight_decay"] = optim.group_decay(args, g["kind"])
        if "momentum" in g:
            g["momentum"] = args.mom
    ctx.step = states["step"]
    ctx.log(f"Loaded model {params_path(prefix, epoch)}: resuming at epoch {epoch}, step {ctx.step}")
    old = states.get("schedule") or {}
    changed = [f"{k} {old.get(k)} -> {v}" for k, v in ctx.schedule.items() if old.get(k) != v]
    if changed:
        ctx.log("Schedule changed on resume: " + ", ".join(changed))


def _apply_states(ctx, states):
    """Load a checked .states document into the model, optimizer, scaler, EMA and RNGs of ctx."""
    if states.get("model"):  # an --ema run: .params holds the average, .states the trained weights
        ctx.raw.load_state_dict(states["model"])
    ctx.opt.load_state_dict(states["optimizer"])
    if states["scaler"]:
        ctx.scaler.load_state_dict(states["scaler"])
    if ctx.ema is not None and states["ema"] is not None:
        ctx.ema.load_state_dict(states["ema"])
    extra = states.get("extra") or {}
    for name, part in getattr(ctx, "extra_states", {}).items():
        if name in extra:  # a state this run keeps that the checkpoint has (older checkpoints have none)
            part.load_state_dict(extra[name])
    torch.set_rng_state(states["rng"]["cpu"])
    if ctx.device.type == "cuda" and states["rng"]["cuda"] is not None:
        torch.cuda.set_rng_state(states["rng"]["cuda"], ctx.device)


@dataclasses.dataclass
class Pretrained:
    """What fine-tuning records of the network it started from; fit() receives it as an argument."""

    arguments: dict  # the pretrained network's get_symbol arguments (not this run's flags)
    fine_tune: list  # every classifier replacement so far (networks.rebuild replays them), this run's last


def symbol_arguments(args, pretrained=None):
    """The arguments PREFIX-symbol.json records for this run: the flags', or the pretrained network's (fine-tune)."""
    args = options.complete(args)
    arguments = network_arguments(args.network, pretrained.arguments if pretrained else vars(args))
    arguments["num_classes"] = args.num_classes
    if args.loss_type == "am-softmax":  # a cosine classifier of this scale (networks.rebuild makes it)
        arguments[COSINE_KEY] = args.am_scale
    return arguments


def write_symbol_for(args, classes=None, pretrained=None, quantization=None):
    """PREFIX-symbol.json: the network's name and arguments, and the evaluation preprocessing (and --qat's record)."""
    args = options.complete(args)
    make_folder(args.model_prefix)
    remove_stale_temps(args.model_prefix)  # temporaries of killed runs under this prefix (never a live one's)
    preprocess = {
        "image_shape": list(parse_shape(args.image_shape)),
        "rgb_mean": parse_floats(args.rgb_mean, "rgb-mean"),
        "rgb_std": parse_floats(args.rgb_std, "rgb-std"),
        "channel_order": "RGB",
        "layout": "NCHW",
        "input_range": "uint8 0-255, then (x - rgb_mean) / rgb_std",
    }
    if getattr(args, "val_resize_size", 0):  # the short side before the centre crop; absent: crop as it is
        preprocess["resize"] = args.val_resize_size
    if classes is not None and len(classes) != args.num_classes:  # names that do not match the outputs mislead
        classes = None
    fine_tune = pretrained.fine_tune if pretrained else None
    try:
        for prefix in [args.model_prefix] + ([args.model_prefix + PEER_SUFFIX] if args.mutual_learning == 2 else []):
            quant = quantization if prefix == args.model_prefix else None  # the peer trains in float
            arguments = symbol_arguments(args, pretrained)
            write_symbol(prefix, args.network, arguments, preprocess, classes, fine_tune, quant)
    except OSError as err:
        raise UserError(f"cannot write {args.model_prefix}-symbol.json: {err.strerror or err}; free space") from None


def make_folder(prefix):
    """Create the folder of --model-prefix; a path through a file or a read-only place is a UserError."""
    folder = os.path.dirname(prefix)
    if not folder or os.path.isdir(folder):
        return
    try:
        os.makedirs(folder, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise UserError(
            f"--model-prefix {prefix}: a part of {folder} is a file, not a folder; pick another prefix"
        ) from None
    except OSError as err:
        raise UserError(f"--model-prefix {prefix}: cannot create the folder {folder} ({err.strerror})") from None
