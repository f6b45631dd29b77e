"""Convert an MXNet checkpoint (prefix-symbol.json + prefix-%04d.params) into the suite's checkpoint format.

  python tools/convert_mxnet.py --prefix MXNET_PREFIX --epoch N --output PREFIX [--data-val sample.rec]
Writes PREFIX-symbol.json and PREFIX-%04d.params (same epoch), reloads them and, with --data-val, reports the
top-1 agreement of the converted model with the source on a sample: with MXNet itself when --mxnet-python names
an interpreter that has it, else with the directly imported network.
"""

import argparse
import logging
import os
import subprocess
import sys
import tempfile

if __package__ in (None, ""):  # run as a file: the repository root holds the packages
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from common import flags  # noqa: E402
from common.util import UserError, main_guard  # noqa: E402

# Run in the interpreter named by --mxnet-python: MXNet's own forward pass of the source checkpoint.
MXNET_FORWARD = """
import sys, numpy as np, mxnet as mx
prefix, epoch, src, dst = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
sym, arg_params, aux_params = mx.model.load_checkpoint(prefix, epoch)
x = np.load(src)
mod = mx.mod.Module(symbol=sym, context=mx.cpu(), label_names=["softmax_label"])
mod.bind(for_training=False, data_shapes=[("data", x.shape)], label_shapes=[("softmax_label", (len(x),))])
mod.set_params(arg_params, aux_params)
mod.forward(mx.io.DataBatch([mx.nd.array(x)], [mx.nd.zeros(len(x))]), is_train=False)
np.save(dst, mod.get_outputs()[0].asnumpy())
"""


def mxnet_outputs(python, prefix, epoch, x):
    """MXNet's softmax outputs for the normalised batch x, computed by `python` (an interpreter with mxnet)."""
    import numpy as np
    import torch

    with tempfile.TemporaryDirectory() as tmp:
        src, dst = os.path.join(tmp, "x.npy"), os.path.join(tmp, "y.npy")
        np.save(src, x.numpy())
        try:
            run = subprocess.run(
                [python, "-c", MXNET_FORWARD, prefix, str(epoch), src, dst], capture_output=True, text=True
            )
        except OSError as err:
            raise UserError(f"--mxnet-python {python}: cannot run it ({err.strerror})") from None
        if run.returncode != 0:
            last = (run.stderr.strip().splitlines() or ["no output"])[-1]
            raise UserError(f"--mxnet-python {python}: MXNet's forward pass failed ({last})")
        return torch.from_numpy(np.load(dst))


def sample(path, pre, count):
    """The first `count` images of path, centre-cropped and normalised: (N, C, H, W) float32."""
    import torch

    from common import inference
    from common.augment import DeviceTransform

    transform = DeviceTransform(pre, pre.shape, False, torch.device("cpu"), channels_last=False)
    xs, seen = [], 0
    for x, _ in inference.val_iter(path, "", pre, min(count, 64), 2):
        xs.append(transform(x))
        seen += len(x)
        if seen >= count:
            break
    return torch.cat(xs)[:count].contiguous()


@main_guard
def main(argv=None):
    """Convert, reload, and compare on a sample when one is given."""
    p = argparse.ArgumentParser(description="convert an MXNet checkpoint to the suite's format")
    p.add_argument("--prefix", required=True, help="the MXNet checkpoint prefix")
    p.add_argument("--epoch", type=flags.integer(min=0), help="its epoch (default: the last saved)")
    p.add_argument("--output", required=True, help="prefix of the converted checkpoint")
    p.add_argument("--data-val", help="a .rec or folder to compare the two on")
    p.add_argument("--num-examples", type=flags.count(), default=64, help="how many images of --data-val to compare")
    p.add_argument("--mxnet-python", help="a Python interpreter with mxnet, to compare against MXNet itself")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)-15s %(message)s")
    if os.path.abspath(args.output) == os.path.abspath(args.prefix):
        raise UserError(f"--output {args.output} is the MXNet checkpoint's own prefix; converting would overwrite it")
    import torch  # after parsing: --help answers before torch loads

    from common import checkpoint, inference, modelzoo, mximport

    model, info = mximport.import_mxnet(args.prefix, args.epoch)
    folder = os.path.dirname(args.output)
    if folder:
        os.makedirs(folder, exist_ok=True)
    arguments = dict(info["arguments"])
    checkpoint.write_symbol(args.output, info["network"], arguments, info["preprocess"], info["classes"])
    checkpoint.save_params(args.output, info["epoch"], model)
    converted, _ = modelzoo.load_checkpoint(args.output, info["epoch"])
    logging.info("wrote %s: %s %s", checkpoint.params_path(args.output, info["epoch"]), info["network"], arguments)
    if not args.data_val:
        return None
    pre = inference.resolve_preprocess(argparse.Namespace(image_shape=None, rgb_mean=None, rgb_std=None), info)
    x = sample(args.data_val, pre, args.num_examples)
    with torch.no_grad():
        ours = converted(x)
        source = mxnet_outputs(args.mxnet_python, args.prefix, info["epoch"], x) if args.mxnet_python else model(x)
    agree = float((ours.argmax(1) == source.argmax(1)).float().mean())
    against = "MXNet" if args.mxnet_python else "the imported network"
    logging.info("top-1 agreement with %s on %d images of %s: %.4f", against, len(x), args.data_val, agree)
    return agree


if __name__ == "__main__":
    main()
