"""Export a model (the suite's checkpoint, an MXNet checkpoint or a zoo name) for deployment.

  --format onnx          ONNX (dynamic batch), checked with onnxruntime against the network on a sample
  --format torch-export  a torch.export program (.pt2), checked the same way after loading it back
  --format int8          post-training static int8 quantization for the CPU (torch.ao FX, oneDNN backend),
                         calibrated on batches of --data-calib, saved as TorchScript with its preprocessing
                         (preprocess.json, which also names the quantized engine to set before running it)
The sample is the first batch of --data-val (else --data-calib) when given, else random images. For onnx and
torch-export the check fails (exit 2) when a top-1 class differs or a logit is off by more than 1e-3 of the largest;
for int8 the agreement is reported (score.py --dtype int8 measures the accuracy change on a whole dataset).
"""

import argparse
import json
import logging
import operator
import os
import sys
import types
import warnings

import torch

if __package__ in (None, ""):  # run as a file: the repository root holds the packages
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from common import modelzoo  # noqa: E402
from common.util import UserError, choice_error, main_guard, temp_near  # noqa: E402

FORMATS = ("onnx", "torch-export", "int8")
TOLERANCE = 1e-3
# oneDNN's int8 kernels ran resnet-18 about 1.2x faster than fbgemm's (the "x86" engine's pick) on an AVX2 CPU
# without VNNI (benchmarks/bench_score.py --int8); fbgemm remains where a torch build lacks oneDNN.
INT8_ENGINE = "onednn" if "onednn" in torch.backends.quantized.supported_engines else "x86"


OUT_OF_PLACE = {"relu_": torch.nn.functional.relu, "add_": operator.add}


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


@torch.no_grad()
def quantize_int8(model, calib, transform, num_batches):
    """Post-training static int8 quantization (INT8_ENGINE), calibrated on num_batches batches of calib."""
    from torch.ao.quantization import get_default_qconfig_mapping, quantize_fx

    torch.backends.quantized.engine = INT8_ENGINE  # the model runs under it
    model = modelzoo.plain_batchnorm(modelzoo.for_inference(model).to("cpu", memory_format=torch.contiguous_format))
    if isinstance(model, torch.fx.GraphModule):
        model = out_of_place(model)
    prepared = None
    for i, (x, _) in enumerate(calib):
        x = transform(x).contiguous()
        if prepared is None:
            with warnings.catch_warnings():  # the FX flow warns that it is superseded; it is what runs int8 fast
                warnings.simplefilter("ignore")
                prepared = quantize_fx.prepare_fx(model, get_default_qconfig_mapping(INT8_ENGINE), (x,))
        prepared(x)
        if i + 1 >= num_batches:
            break
    if prepared is None:
        raise UserError("the calibration data holds no image")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return quantize_fx.convert_fx(prepared)


def sample_batch(args, pre):
    """(uint8 NHWC batch, normalising transform) for the checks: the data's first batch, else random images."""
    import score
    from common.augment import DeviceTransform

    transform = DeviceTransform(pre, pre.shape, False, torch.device("cpu"), channels_last=False)
    path = args.data_val or args.data_calib
    if path:
        x, _ = next(iter(score.val_iter(path, "", pre, args.batch_size, 2)))
        return x, transform
    c, h, w = pre.shape
    return torch.randint(0, 256, (args.batch_size, h, w, c), dtype=torch.uint8), transform


def compare(name, ref, out, logits_too):
    """Check the exported model's output against the network's; return a one-line summary."""
    ref, out = torch.as_tensor(ref).float(), torch.as_tensor(out).float()
    agree = float((ref.argmax(1) == out.argmax(1)).float().mean())
    scale = float(ref.abs().max()) or 1.0
    err = float((ref - out).abs().max()) / scale
    line = (
        f"{name}: top-1 agreement {agree:.4f} on {len(ref)} images, largest logit difference {err:.2e} of the largest"
    )
    if logits_too and (err > TOLERANCE or agree < 1.0):  # int8 is reported, not judged: score.py measures it
        raise UserError(f"check failed: {line}; the file is written, but do not ship it without a look")
    return line


def _tmp_near(path):
    fd, tmp = temp_near(path)
    os.close(fd)
    return tmp


def export_onnx(model, x, path, meta):
    """Write model as ONNX with a dynamic batch axis and the preprocessing in its metadata; check with onnxruntime."""
    import onnx
    import onnxruntime

    for name in ("onnxscript", "onnx_ir", "torch.onnx"):  # their optimiser logs every rewrite at INFO
        logging.getLogger(name).setLevel(logging.WARNING)
    tmp = _tmp_near(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                model,
                (x,),
                tmp,
                input_names=["data"],
                output_names=["logits"],
                dynamic_shapes=({0: torch.export.Dim("batch")},),
                dynamo=True,
                verbose=False,
            )
        proto = onnx.load(tmp)
        for key, value in meta.items():
            proto.metadata_props.add(key=key, value=json.dumps(value))
        onnx.save(proto, tmp)
        session = onnxruntime.InferenceSession(tmp, providers=["CPUExecutionProvider"])
        out = session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]
        os.replace(tmp, path)
    finally:
        for leftover in (tmp, tmp + ".data"):  # the exporter's external weights, folded into the file by onnx.save
            if os.path.exists(leftover):
                os.unlink(leftover)
    return out


def export_program(model, x, path, meta):
    """Write model as a torch.export program (.pt2) with the preprocessing as extra file; load it back to check."""
    program = torch.export.export(model, (x,), dynamic_shapes=({0: torch.export.Dim("batch", min=1)},))
    tmp = _tmp_near(path)
    try:
        torch.export.save(program, tmp, extra_files={"preprocess.json": json.dumps(meta)})
        out = torch.export.load(tmp).module()(x)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return out


def export_int8(model, x, path, meta, calib, transform, num_batches):
    """Quantize to int8, save it as TorchScript with the preprocessing as extra file, load it back and run x."""
    qmodel = quantize_int8(model, calib, transform, num_batches)
    meta = {**meta, "quantized_engine": INT8_ENGINE}  # its activations are calibrated for this engine's kernels
    tmp = _tmp_near(path)
    try:
        scripted = torch.jit.trace(qmodel, x)
        torch.jit.save(scripted, tmp, _extra_files={"preprocess.json": json.dumps(meta)})
        out = torch.jit.load(tmp)(x)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return out


def parse_args(argv):
    """The flags: what to export, how, and the data for the checks and calibration."""
    p = argparse.ArgumentParser(description="export a model to ONNX, torch.export or int8")
    p.add_argument("--model", required=True, help="checkpoint prefix (the suite's or MXNet's) or a pretrained name")
    p.add_argument("--load-epoch", type=int, help="epoch of the checkpoint (default: the last saved)")
    p.add_argument("--format", default="onnx", help="onnx, torch-export or int8")
    p.add_argument("--output", required=True, help="the file to write (.onnx, .pt2, .pt)")
    p.add_argument("--data-val", help="a .rec or folder whose first batch checks the export")
    p.add_argument("--data-calib", help="int8: calibration data (.rec or folder; default: --data-val)")
    p.add_argument("--calib-batches", type=int, default=4, help="int8: number of calibration batches")
    p.add_argument("--batch-size", type=int, default=8, help="batch size of the sample and calibration")
    p.add_argument("--image-shape", help="C,H,W (default: saved with the model)")
    p.add_argument("--rgb-mean", help="mean rgb (default: saved with the model)")
    p.add_argument("--rgb-std", help="std rgb (default: saved with the model)")
    return p.parse_args(argv)


@main_guard
def main(argv=None):
    """Export --model in --format to --output and check it on a sample."""
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)-15s %(message)s")
    if args.format not in FORMATS:
        raise choice_error("--format", args.format, FORMATS)
    import score

    model, info = modelzoo.load_model(args.model, args.load_epoch)
    pre = score.resolve_preprocess(args, info)
    meta = {"network": info["network"], "arguments": info.get("arguments") or {}, "classes": info.get("classes")}
    meta["preprocess"] = {"image_shape": list(pre.shape), "rgb_mean": pre.rgb_mean, "rgb_std": pre.rgb_std}
    raw, transform = sample_batch(args, pre)
    x = transform(raw).contiguous()
    model = modelzoo.plain_batchnorm(model)
    with torch.no_grad():
        ref = model(x)
        if args.format == "onnx":
            out = export_onnx(model, x, args.output, meta)
        elif args.format == "torch-export":
            out = export_program(model, x, args.output, meta)
        else:
            if not (args.data_calib or args.data_val):
                raise UserError("--format int8 needs calibration images: pass --data-calib (or --data-val) FILE.rec")
            calib = score.val_iter(args.data_calib or args.data_val, "", pre, args.batch_size, 2)
            out = export_int8(model, x, args.output, meta, calib, transform, args.calib_batches)
    logging.info("wrote %s (%s) from %s", args.output, args.format, info["source"])
    logging.info(compare(args.format, ref, out, logits_too=args.format != "int8"))
    return types.SimpleNamespace(path=args.output, reference=ref, output=out)


if __name__ == "__main__":
    main()
