"""Quantization-aware training (torch.ao.quantization, FX graph mode) and the int8 network it trains.

  engine(name)              --quant-engine: one of torch's quantized engines, or DEFAULT_ENGINE
  for_run(args, model, shape)  fit's QAT for --qat 1, after refuse(args): the flags it cannot train with
  QAT(model, engine, ...)   fit's handle: the fake-quantized training graph over the network's own tensors,
                            torchvision's epoch controls, and the trained quantization as state (PREFIX-NNNN.states)
  trained_int8(prefix, ...) the int8 network converted from a --qat checkpoint's trained quantization, else None
  out_of_place(graph)       in-place ReLU / add rewritten so that the quantization flow fuses and quantizes them
The training graph shares every parameter and BatchNorm statistic with the float network, so PREFIX-NNNN.params
holds the float network as in any run (score.py, predict.py and ONNX export read it unchanged) and .states
"extra.qat" the rest: fake-quant scales and zero points, observers' ranges. Rebuilding the graph the same way
(prepare_qat_fx on the float network) and loading that state gives back the trained model; convert_fx makes it int8.
"""

import copy
import logging
import operator
import os
import warnings

import torch
from torch import nn

from common import checkpoint, modelzoo, validate
from common.util import UserError, choice_error
from symbols.mxlayers import MXBatchNorm

# oneDNN's int8 kernels ran resnet-18 about 1.2x faster than fbgemm's (the "x86" engine's pick) on an AVX2 CPU
# without VNNI (benchmarks/bench_score.py --int8); fbgemm remains where a torch build lacks oneDNN.
DEFAULT_ENGINE = "onednn" if "onednn" in torch.backends.quantized.supported_engines else "x86"
OUT_OF_PLACE = {"relu_": torch.nn.functional.relu, "add_": operator.add}


def engines():
    """The quantized engines this torch build offers."""
    return [e for e in torch.backends.quantized.supported_engines if e != "none"]


def engine(name=None):
    """--quant-engine: name when this torch offers it, DEFAULT_ENGINE for None; else the one-line error."""
    if name is None:
        return DEFAULT_ENGINE
    if name not in engines():
        raise choice_error("--quant-engine", name, engines())
    return name


def for_run(args, model, shape):
    """fit's QAT for --qat 1 (model: the float network on its device; shape: C,H,W), else None."""
    if not args.qat:
        return None
    refuse(args)
    return QAT(model, engine(args.quant_engine), shape, args.qat_observer_epochs, args.qat_bn_epochs)


def refuse(args):
    """UserError for a flag --qat 1 cannot train with (distributed training works: the graph is prepared first)."""
    if args.compile:
        raise UserError(
            "--qat 1 trains the fake-quantized graph eagerly (observers switch off by epoch); drop --compile"
        )
    if getattr(args, "activation_checkpointing", 0):
        raise UserError(
            "--qat 1 with --activation-checkpointing 1: the quantization graph is traced without the recomputation; "
            "drop --activation-checkpointing"
        )
    if args.dtype != "float32":
        raise UserError(
            f"--qat 1 trains in float32 (fake quantization rounds float32 values to the int8 grid); "
            f"drop --dtype {args.dtype}"
        )
    if args.ema:
        raise UserError(
            "--qat 1 with --ema: an average of fake-quantized weights has no trained quantization of its "
            "own; drop --ema"
        )


def out_of_place(graph_module):
    """Rewrite `t.relu_()` / `t.add_(u)` as their out-of-place forms where t has no other reader; returns it.

    The quantization flow fuses and quantizes only the out-of-place forms: on the MXNet-layout ResNet the in-place
    ones left each ReLU after a convolution unfused and each residual add in float32 between dequantize and quantize.
    """
    for node in graph_module.graph.nodes:
        if node.op == "call_method" and node.target in OUT_OF_PLACE and len(node.args[0].users) == 1:
            node.op, node.target = "call_function", OUT_OF_PLACE[node.target]
    graph_module.recompile()
    return graph_module


def _sharing_copy(model):
    """A copy of model's modules that holds model's own parameters and buffers (no tensor is copied)."""
    return copy.deepcopy(model, {id(t): t for t in [*model.parameters(), *model.buffers()]})


def _torch_batchnorm(model):
    """Swap each MXNet-semantics BatchNorm for an nn.BatchNorm2d over the same tensors, in place; return model.

    Written here because the FX flow traces and folds only torch's own BatchNorm2d, and the copy must keep training
    the network's tensors (networks.plain_batchnorm copies them, for inference). fix_gamma holds gamma at 1, which
    MXNet's layer implies and ignores the stored value for: the stored value is set to 1 so that it can be shared.
    """
    for name, child in list(model.named_children()):
        if isinstance(child, MXBatchNorm):
            bn = nn.BatchNorm2d(child.num_features, eps=child.eps, momentum=child.momentum)
            if child.fix_gamma:
                with torch.no_grad():
                    child.weight.fill_(1.0)
            bn.weight, bn.bias = child.weight, child.bias
            bn.running_mean, bn.running_var, bn.num_batches_tracked = child.running_mean, child.running_var, None
            setattr(model, name, bn.train(child.training))
        else:
            _torch_batchnorm(child)
    return model


def prepare(model, engine_name, shape):
    """The fake-quantized training graph (torch.ao's default QAT qconfig for the engine) over model's own tensors."""
    from torch.ao.quantization import get_default_qat_qconfig_mapping, quantize_fx

    device = next(iter(model.parameters())).device
    twin = _torch_batchnorm(_sharing_copy(model)).train()
    try:
        graph = out_of_place(torch.fx.symbolic_trace(twin))
    except Exception as err:  # noqa: BLE001 - FX raises several types for code it cannot trace
        raise UserError(f"--qat: the network cannot be traced for quantization ({type(err).__name__}: {err})") from None
    with warnings.catch_warnings():  # the FX flow warns that it is superseded; it is what runs int8 fast
        warnings.simplefilter("ignore")
        example = (torch.zeros(1, *shape, device=device),)
        prepared = quantize_fx.prepare_qat_fx(graph, get_default_qat_qconfig_mapping(engine_name), example)
    return prepared.to(device)


def convert(prepared, engine_name):
    """The int8 network of a trained fake-quantized graph, on the CPU, with the engine set to run it."""
    from torch.ao.quantization import quantize_fx

    torch.backends.quantized.engine = engine_name  # the model runs under it
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return quantize_fx.convert_fx(prepared.to("cpu").eval())


class QAT:
    """Quantization-aware training of one network: its fake-quantized graph, epoch controls and state.

    model: the float network (its tensors train through the graph); shape: C,H,W of an input image.
    observer_epochs / bn_epochs: the epochs in which the observers / the folded BatchNorm statistics update
    (torchvision's --num-observer-update-epochs / --num-batch-norm-update-epochs), counted from the first epoch
    trained with --qat (a float run resumed with --qat 1 starts its quantization there).
    """

    def __init__(self, model, engine_name, shape, observer_epochs=4, bn_epochs=3):
        self.engine, self.observer_epochs, self.bn_epochs = engine_name, observer_epochs, bn_epochs
        self.model = prepare(model, engine_name, shape)
        own = {id(t) for t in model.state_dict(keep_vars=True).values()}
        graph = self.model.state_dict(keep_vars=True)
        lost = own - {id(t) for t in graph.values()}
        if lost:  # the float network's .params would not hold what trains
            raise RuntimeError(f"the quantization-aware graph does not share {len(lost)} tensors of the network")
        self.keys = sorted(k for k, t in graph.items() if id(t) not in own)  # scales, zero points, observer ranges
        self.first_epoch = None  # the first epoch trained with --qat: this run's first, or the checkpoint's

    def record(self):
        """What PREFIX-symbol.json records: the engine the quantization was trained for, and the controls."""
        return {"engine": self.engine, "observer_epochs": self.observer_epochs, "bn_epochs": self.bn_epochs}

    def start_epoch(self, epoch, first, log):
        """torchvision's controls at the start of `epoch` (from 0); says when one takes effect."""
        from torch.ao.nn.intrinsic import qat as nniqat

        self.first_epoch = epoch if self.first_epoch is None else self.first_epoch
        done = epoch - self.first_epoch  # epochs trained with --qat before this one
        self.observe(done < self.observer_epochs)
        self.model.apply(nniqat.update_bn_stats if done < self.bn_epochs else nniqat.freeze_bn_stats)
        for flag, n, what in (
            ("--qat-observer-epochs", self.observer_epochs, "the observers stop updating the activation ranges"),
            ("--qat-bn-epochs", self.bn_epochs, "the BatchNorm statistics folded into convolutions freeze"),
        ):
            if done == n or (first and done > n):
                log(f"Epoch[{epoch}] QAT: {what} ({flag} {n})")

    def observe(self, on):
        """Let the observers update the ranges (training data) or not (validation, and after their epochs)."""
        from torch.ao.quantization import disable_observer, enable_observer

        self.model.apply(enable_observer if on else disable_observer)

    def state_dict(self):
        """The trained quantization (the graph's tensors that are not the network's, which .params holds) and the
        first epoch trained with --qat."""
        state = self.model.state_dict()
        return {"tensors": {k: state[k] for k in self.keys}, "first_epoch": self.first_epoch}

    def load_state_dict(self, state):
        """Load what state_dict() gave; ValueError naming the first part that does not fit."""
        tensors = state.get("tensors") if isinstance(state, dict) else None
        if not isinstance(tensors, dict):
            raise ValueError("the saved quantization holds no tensors")
        odd = sorted(set(self.keys) ^ set(tensors))
        if odd:
            what = "no" if odd[0] in self.keys else "an unknown"
            raise ValueError(f"the saved quantization has {what} tensor {odd[0]}")
        for key, value in tensors.items():
            if not isinstance(value, torch.Tensor):
                raise ValueError(f"the saved quantization's {key} is not a tensor")
        first = state.get("first_epoch")
        if first is not None and (isinstance(first, bool) or not isinstance(first, int) or first < 0):
            raise ValueError(f"the saved first --qat epoch {first!r} is not an epoch number")
        self.model.load_state_dict(tensors, strict=False)  # torch's observers resize their ranges to the saved ones
        self.first_epoch = first


def _recorded_engine(path, record, asked):
    """The engine a --qat checkpoint was trained for; UserError when --quant-engine names another."""
    name = record.get("engine") if isinstance(record, dict) else None
    if not isinstance(name, str):
        raise UserError(f"{path}: field 'qat.engine' is {name!r}, not a quantized engine's name; restore the file")
    if name not in engines():
        raise UserError(
            f"{path}: the model's quantization was trained for engine {name}, which this torch lacks "
            f"(it has {', '.join(engines())}); score or export it where torch has {name}"
        )
    if asked is not None and engine(asked) != name:
        raise UserError(f"{path}: the model's quantization was trained for engine {name}; drop --quant-engine {asked}")
    return name


def trained_int8(prefix, epoch, asked_engine, log=logging.info):
    """(int8 network, engine) from the quantization a --qat run trained, or None for another model (calibrate it).

    prefix: --model (a checkpoint prefix, an MXNet one or a zoo name); epoch: --load-epoch (None: the last saved).
    """
    path = f"{prefix}-symbol.json"
    record = checkpoint.read_json(path).get("qat") if os.path.isfile(path) else None
    if not record:
        return None
    name = _recorded_engine(path, record, asked_engine)
    epoch = checkpoint.pick_epoch(prefix, epoch)
    states = checkpoint.states_path(prefix, epoch)
    if not os.path.isfile(states):
        raise UserError(f"{states} not found: it holds the quantization trained with --qat; copy it beside the .params")
    state = (validate.states_doc(states, checkpoint.load_states(prefix, epoch)).get("extra") or {}).get("qat")
    if state is None:
        log(f"int8: {states} holds no trained quantization (an epoch trained without --qat): calibrating instead")
        return None
    model, info = modelzoo.load_checkpoint(prefix, epoch)
    shape = tuple((info.get("preprocess") or {}).get("image_shape") or (3, 224, 224))
    qat = QAT(model.train(), name, shape)
    try:
        qat.load_state_dict(state)
    except (ValueError, RuntimeError) as err:
        raise UserError(f"{states} does not fit {info['network']}: {str(err).splitlines()[0]}; restore it") from None
    log(f"int8: the quantization trained with --qat ({states}, engine {name}), not a calibration")
    return convert(qat.model, name), name
