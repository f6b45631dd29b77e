"""Teachers of the training loss: a trained network to distil from, or a peer network trained alongside.

load_teacher(args, run, device)   --distill-from: a suite checkpoint, an MXNet checkpoint or a zoo name (loaded
                                  as score.py loads one, common/modelzoo.py), frozen in eval mode; it sees the
                                  student's batch converted to its own preprocessing (mean/std, size)
make_peer(args, raw, run, opt, ..) --mutual-learning 2: the second network of deep mutual learning (Zhang et al. 2018)
Both see the batch network 1 takes in training through a Tap, a forward pre-hook on the module the loop runs (the
network, or its DDP / quantization-aware wrapper): the criterion keeps its (logits, target) form wherever it is
called (the loop, SAM's second pass, the rate finder).

How mutual learning fits the loop without the loop knowing (common/fit.py stays about one network):
- The peer is a copy of network 1 with its own initialisation (seed + 1; fine-tuning: the new classifier only).
- It runs inside the criterion (common/objective.py): criterion(logits, target) runs the peer on the batch and returns
  network 1's loss + (peer's loss - its detached value): the value logged, checked and shown is network 1's, and
  the one backward reaches both networks. Each learns from the labels and from the other's softened output.
- Its parameters are extra groups at the end of the one optimizer: one step, one AMP scaler, one learning-rate
  schedule, one zero_grad; SAM and gradient clipping, acting on the optimizer's groups, cover both.
- Metrics, validation, EMA and the best epoch are network 1's; score.py scores the peer from its own files.
- Checkpoints (common/checkpoint.py): PREFIX-peer-symbol.json, and at each save PREFIX-peer-NNNN.params and
  .states (its part of the optimizer; step, scaler, RNG as network 1's), written before PREFIX's own, so each epoch
  PREFIX lists as complete has its peer; resume loads the peer's weights and joins the two optimizer parts again.
  PREFIX's and PREFIX-peer's files are each an ordinary single-network checkpoint.
"""

import copy
import logging

import torch
import torch.nn.functional as F
from torch import nn

from common import modelzoo
from common.checkpoint import PEER_SUFFIX
from common.networks import for_inference
from common.optim import init_weights, make_optimizer
from common.util import UserError, parse_floats, parse_shape


class Tap:
    """The input of a module's latest forward in training mode (a forward pre-hook), for a teacher or peer to see."""

    def __init__(self, module):
        self.x = None
        module.register_forward_pre_hook(self._take)

    def _take(self, module, inputs):
        if module.training:  # validation batches are not the training step's
            self.x = inputs[0]


class Teacher:
    """A frozen network: teacher() -> logits (no gradient) on the student's latest training batch (N, C, H, W)."""

    def __init__(self, model, tap, scale=None, shift=None, size=None):
        self.model, self.tap, self.scale, self.shift, self.size = model, tap, scale, shift, size

    @torch.no_grad()
    def __call__(self):
        x = self.tap.x
        if self.scale is not None:  # (u - mean_s) / std_s -> (u - mean_t) / std_t, per channel
            x = x * self.scale + self.shift
        if self.size is not None:
            x = F.interpolate(x, size=self.size, mode="bilinear", align_corners=False, antialias=True)
        return self.model(x)


def _stats(text, channels, name):
    """(1, C, 1, 1) tensor of a mean or std given as '1,2,3' text or a list."""
    text = ",".join(map(str, text)) if isinstance(text, list | tuple) else text
    return torch.tensor(parse_floats(text, name, (3, channels))[:channels]).view(1, channels, 1, 1)


def load_teacher(args, student, device, log=logging.info):
    """The Teacher of --distill-from, or None; student: the module the loop runs, whose training input it sees.

    UserError when the teacher's classes or image channels differ from the student's."""
    spec = args.distill_from
    if not spec:
        return None
    if args.mutual_learning == 2:
        raise UserError("--distill-from and --mutual-learning 2 do not combine; give one of them")
    model, info = modelzoo.load_model(spec, None, "--distill-from")
    shape = parse_shape(args.image_shape)
    pre = info.get("preprocess") or {}
    tshape = tuple(pre.get("image_shape") or shape)
    if tshape[0] != shape[0]:
        raise UserError(
            f"--distill-from {spec}: the teacher takes {tshape[0]}-channel images and the student "
            f"--image-shape {args.image_shape}; distil from a teacher of {shape[0]}-channel images"
        )
    conv = any(isinstance(m, nn.Conv2d) for m in model.modules())
    model = for_inference(model).to(device, memory_format=torch.channels_last if conv else torch.preserve_format)
    with torch.no_grad():
        classes = model(torch.zeros(1, *tshape, device=device)).shape[1]
    if classes != args.num_classes:
        raise UserError(
            f"--distill-from {spec}: the teacher has {classes} classes but --num-classes is {args.num_classes}; "
            f"distil from a teacher of the same {args.num_classes} classes"
        )
    c = shape[0]
    mean_s, std_s = _stats(args.rgb_mean, c, "rgb-mean"), _stats(args.rgb_std, c, "rgb-std")
    mean_t = _stats(pre.get("rgb_mean", args.rgb_mean), c, "rgb-mean")
    std_t = _stats(pre.get("rgb_std", args.rgb_std), c, "rgb-std")
    scale = shift = size = None
    converted = []
    if not (torch.equal(mean_s, mean_t) and torch.equal(std_s, std_t)):
        scale, shift = (std_s / std_t).to(device), ((mean_s - mean_t) / std_t).to(device)
        converted.append(f"rgb mean {mean_t.flatten().tolist()} std {std_t.flatten().tolist()}")
    if tshape[1:] != shape[1:]:
        size = tuple(tshape[1:])
        converted.append(f"resized to {size[0]}x{size[1]}")
    said = f"; its input converted from the student's: {', '.join(converted)}" if converted else ""
    log(f"distilling from {info['source']} ({info['network']}, {classes} classes){said}")
    return Teacher(model, Tap(student), scale, shift, size)


class Peer:
    """The second network of --mutual-learning 2: peer() -> logits with gradients on network 1's latest training batch.

    net: the plain module (saved under prefix); model: what runs (DDP-wrapped when distributed); groups: how many
    of the optimizer's parameter groups, at its end, are the peer's.
    """

    def __init__(self, first, net, model, groups, prefix, tap):
        self.first, self.net, self.model, self.groups, self.prefix, self.tap = first, net, model, groups, prefix, tap

    def __call__(self):
        for mine, theirs in zip(self.first.modules(), self.net.modules()):  # network 1's modes (frozen norms too)
            theirs.training = mine.training
        return self.model(self.tap.x)

    def split_optimizer(self, state):
        """(network 1's, the peer's) parts of the one optimizer's state_dict, each an ordinary state_dict."""
        cut = len(state["param_groups"]) - self.groups
        return _part(state, state["param_groups"][:cut]), _part(state, state["param_groups"][cut:])

    def join_optimizer(self, first, peer):
        """The one optimizer's state_dict from network 1's part and the peer's (split_optimizer's inverse)."""
        offset = sum(len(g["params"]) for g in first["param_groups"])
        groups = list(first["param_groups"])
        groups += [dict(g, params=[i + offset for i in g["params"]]) for g in peer["param_groups"]]
        state = dict(first["state"])
        state.update({i + offset: s for i, s in peer["state"].items()})
        return dict(first, state=state, param_groups=groups)


def _part(state, groups):
    """The state_dict of an optimizer over `groups` alone, its parameters numbered from 0."""
    ids = {old: new for new, old in enumerate(i for g in groups for i in g["params"])}
    return dict(
        state,
        state={ids[i]: s for i, s in state["state"].items() if i in ids},
        param_groups=[dict(g, params=[ids[i] for i in g["params"]]) for g in groups],
    )


def make_peer(args, raw, run, opt, device, *, fresh=True):
    """The Peer of --mutual-learning 2 (None otherwise): raw's copy, initialised anew, its groups added to opt.

    run: the module the loop runs (raw or its wrapper); fresh: raw was initialised (not pretrained); else only the
    peer's last linear layer starts anew."""
    if args.mutual_learning != 2:
        return None
    if not args.model_prefix:
        logging.info("--mutual-learning 2 without --model-prefix: neither network is saved")
    net = copy.deepcopy(raw)
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):  # network 1's initialisation and data order do not change
        torch.manual_seed(args.seed + 1)
        if fresh:
            init_weights(net, args.initializer, args.network)
        else:
            [m for m in net.modules() if isinstance(m, nn.Linear)][-1].reset_parameters()
    groups = make_optimizer(args, net).param_groups  # the groups (decay, lr_mult) network 1's optimizer has
    for group in groups:
        opt.add_param_group(group)
    model = net
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        model = nn.parallel.DistributedDataParallel(net, device_ids=[device.index] if device.type == "cuda" else None)
    prefix = f"{args.model_prefix}{PEER_SUFFIX}" if args.model_prefix else None
    return Peer(raw, net, model, len(groups), prefix, Tap(run))  # tapped after the copy: the peer's own runs are not
