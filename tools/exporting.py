"""The formats of tools/export.py: ONNX (checked with onnxruntime), a torch.export program, int8 TorchScript
(a --qat model's trained quantization, else a calibration).

Each writes through a temporary name (common.util.atomic_path) and runs the written file on a sample batch;
compare() judges the result against the network. Kept apart from the command line so that --help loads no torch.
"""

import json
import logging
import warnings

import torch

from common import inference, qat
from common.augment import DeviceTransform
from common.util import UserError, atomic_path

TOLERANCE = 1e-3


def sample_batch(args, pre):
    """(uint8 NHWC batch, normalising transform) for the checks: the data's first batch, else random images."""
    transform = DeviceTransform(pre, pre.shape, False, torch.device("cpu"), channels_last=False)
    path = args.data_val or args.data_calib
    if path:
        x, _ = next(iter(inference.val_iter(path, "", pre, args.batch_size, 2)))
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


def export_onnx(model, x, path, meta):
    """Write model as ONNX with a dynamic batch axis and the preprocessing in its metadata; check with onnxruntime."""
    try:
        import onnx
        import onnxruntime
    except ImportError:
        raise UserError("--format onnx needs onnx and onnxruntime: pip install 'mxtorch-imgcls[export]'") from None

    for name in ("onnxscript", "onnx_ir", "torch.onnx"):  # their optimiser logs every rewrite at INFO
        logging.getLogger(name).setLevel(logging.WARNING)
    # ".data": the exporter's external weights, folded into the file by onnx.save and removed with the temporary
    with atomic_path(path, extra_suffixes=(".data",)) as tmp:
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
    return out


def export_program(model, x, path, meta):
    """Write model as a torch.export program (.pt2) with the preprocessing as extra file; load it back to check."""
    program = torch.export.export(model, (x,), dynamic_shapes=({0: torch.export.Dim("batch", min=1)},))
    with atomic_path(path) as tmp:
        torch.export.save(program, tmp, extra_files={"preprocess.json": json.dumps(meta)})
        out = torch.export.load(tmp).module()(x)
    return out


def int8_model(args, model, pre, transform):
    """(int8 network, what preprocess.json records of it): a --qat checkpoint's trained quantization, else the
    network calibrated on --calib-batches batches of --data-calib (or --data-val)."""
    trained = qat.trained_int8(args.model, args.load_epoch, args.quant_engine)
    if trained is not None:
        qmodel, engine = trained
        return qmodel, {"quantized_engine": engine, "quantization": "qat"}
    if not (args.data_calib or args.data_val):
        raise UserError("--format int8 needs calibration images: pass --data-calib (or --data-val) FILE.rec")
    calib = inference.val_iter(args.data_calib or args.data_val, "", pre, args.batch_size, 2)
    engine = qat.engine(args.quant_engine)
    qmodel = inference.quantize_int8(model, calib, transform, args.calib_batches, engine)
    # its activations are calibrated for this engine: run the file under it
    return qmodel, {"quantized_engine": engine, "quantization": f"calibrated on {args.calib_batches} batches"}


def export_int8(qmodel, x, path, meta):
    """Save an int8 network as TorchScript with the preprocessing as extra file, load it back and run x."""
    # TorchScript is what runs torch's int8 kernels without Python; torch now warns that it is deprecated on every
    # trace, save and load: said once here instead, in the docstring of tools/export.py
    with atomic_path(path) as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        scripted = torch.jit.trace(qmodel, x)
        torch.jit.save(scripted, tmp, _extra_files={"preprocess.json": json.dumps(meta)})
        out = torch.jit.load(tmp)(x)
    return out
