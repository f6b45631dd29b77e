"""Export a model (the suite's checkpoint, an MXNet checkpoint or a zoo name) for deployment.

  --format onnx          ONNX (dynamic batch), checked with onnxruntime against the network on a sample
  --format torch-export  a torch.export program (.pt2), checked the same way after loading it back
  --format int8          int8 for the CPU (torch.ao FX): a --qat checkpoint's trained quantization, else
                         post-training static quantization calibrated on --calib-batches batches of --data-calib
                         for --quant-engine (default oneDNN); saved as TorchScript with its preprocessing
                         (preprocess.json, which also names the quantized engine to set before running it)
The sample is the first batch of --data-val (else --data-calib) when given, else random images. For onnx and
torch-export the check fails (exit 2) when a top-1 class differs or a logit is off by more than 1e-3 of the largest;
for int8 the agreement is reported (score.py --dtype int8 measures the accuracy change on a whole dataset).
int8 is saved as TorchScript, which torch has deprecated but which is still what runs its int8 kernels without
Python; its deprecation warnings are not repeated on every export.
"""

import argparse
import logging
import os
import sys
import types

if __package__ in (None, ""):  # run as a file: the repository root holds the packages
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from common import flags, options  # noqa: E402
from common.util import choice_error, main_guard  # noqa: E402

FORMATS = ("onnx", "torch-export", "int8")


def parse_args(argv):
    """The flags: what to export, how, and the data for the checks and calibration."""
    p = argparse.ArgumentParser(
        description="export a model to ONNX, torch.export or int8", formatter_class=options.HelpFormatter
    )
    p.add_argument("--model", required=True, help="checkpoint prefix (the suite's or MXNet's) or a pretrained name")
    p.add_argument(
        "--load-epoch",
        type=flags.load_epoch,
        help="epoch of the checkpoint, or best (PREFIX-best.json's; default: the last saved)",
    )
    p.add_argument("--format", default="onnx", help="onnx, torch-export or int8")
    p.add_argument(
        "--output", required=True, type=flags.output_file(create=True), help="the file to write (.onnx, .pt2, .pt)"
    )
    p.add_argument("--data-val", help="a .rec or folder whose first batch checks the export")
    options.add_int8_args(p)
    p.add_argument("--batch-size", type=flags.count(), default=8, help="batch size of the sample and calibration")
    p.add_argument("--image-shape", help="C,H,W (default: saved with the model)")
    p.add_argument("--rgb-mean", help="mean rgb (default: saved with the model)")
    p.add_argument("--rgb-std", help="std rgb (default: saved with the model)")
    return p.parse_args(argv)


@main_guard
def main(argv=None):
    """Export --model in --format to --output and check it on a sample."""
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)-15s %(message)s")
    import torch  # after parsing: --help answers before torch loads

    from common import inference, modelzoo, networks, qat
    from tools.exporting import compare, export_int8, export_onnx, export_program, int8_model, sample_batch

    os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)  # as training makes its prefix's
    if args.format not in FORMATS:
        raise choice_error("--format", args.format, FORMATS)
    qat.engine(args.quant_engine)  # a bad --quant-engine ends here, before anything loads
    model, info = modelzoo.load_model(args.model, args.load_epoch)
    pre = inference.resolve_preprocess(args, info)
    meta = {"network": info["network"], "arguments": info.get("arguments") or {}, "classes": info.get("classes")}
    meta["preprocess"] = {"image_shape": list(pre.shape), "rgb_mean": pre.rgb_mean, "rgb_std": pre.rgb_std}
    raw, transform = sample_batch(args, pre)
    x = transform(raw).contiguous()
    model = networks.plain_batchnorm(model)
    with torch.no_grad():
        ref = model(x)
        if args.format == "onnx":
            out = export_onnx(model, x, args.output, meta)
        elif args.format == "torch-export":
            out = export_program(model, x, args.output, meta)
        else:
            qmodel, quantization = int8_model(args, model, pre, transform)
            out = export_int8(qmodel, x, args.output, meta | quantization)
    logging.info("wrote %s (%s) from %s", args.output, args.format, info["source"])
    logging.info(compare(args.format, ref, out, logits_too=args.format != "int8"))
    return types.SimpleNamespace(path=args.output, reference=ref, output=out)


if __name__ == "__main__":
    main()
