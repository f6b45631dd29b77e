"""Inference shared by score.py, predict.py, tools/export.py and tools/convert_mxnet.py.

  resolve_preprocess(flags, info)  the model's saved preprocessing, overridden by --image-shape/--rgb-mean/--rgb-std
                                   and --val-resize-size
  val_iter(path, idx, pre, ...)    centre-crop batches (after the resize, when one is saved) of a .rec or class
                                   folder, in file order
  evaluate / log_summary           a confusion matrix; its figures (common.predictions.summarize) as MXNet's
                                   score.py lines
  quantize_int8(model, calib, ...) post-training static int8 quantization, FX graph mode (engine: common/qat.py)
  score_int8(...)                  int8 (a --qat model's trained quantization, else calibrated), scored against
                                   float32
  predict(model, files, ...)       top-K classes of image files (predict.py), unreadable files skipped and listed
The device choice is common.dist.get_device; loading a model by name is common.modelzoo.load_model.
"""

import dataclasses
import logging
import sys
import time
import types
import warnings

import numpy as np
import torch
from tqdm import tqdm

from common import qat
from common.augment import DeviceTransform, Geometry
from common.data import ImageIter, open_checked
from common.mximport import MXNET_MEAN, MXNET_STD
from common.networks import for_inference, plain_batchnorm
from common.options import AUGMENT
from common.predictions import summarize, summary_lines
from common.util import UserError, parse_floats, parse_shape

DTYPES = {"float32": None, "float16": torch.float16, "bfloat16": torch.bfloat16, "int8": None}


def resolve_preprocess(args, info):
    """The preprocessing to use: the model's saved values, overridden by the flags; returns a namespace.

    resize: the short side before the centre crop (--val-resize-size, else the saved one; a zoo model's own), 0 for
    none, None when neither says (score.py crops the image as it is, predict.py resizes to the crop over 0.875).
    """
    saved = info.get("preprocess") or {}
    shape = parse_shape(args.image_shape) if args.image_shape else tuple(saved.get("image_shape") or (3, 224, 224))
    mean = args.rgb_mean or ",".join(str(v) for v in saved.get("rgb_mean", MXNET_MEAN))
    std = args.rgb_std or ",".join(str(v) for v in saved.get("rgb_std", MXNET_STD))
    parse_floats(mean, "rgb-mean")
    parse_floats(std, "rgb-std")
    resize, given = saved.get("resize"), getattr(args, "val_resize_size", None)
    if resize is not None and (isinstance(resize, bool) or not isinstance(resize, int) or resize < 1):
        raise UserError(f"{info.get('source', 'the model')}: its preprocess.resize {resize!r} is not a pixel count")
    resize = resize if given is None else given
    side = max(shape[1:])
    if resize and resize < side:  # the resized image would not cover the crop
        what = f"--val-resize-size {resize}" if given is not None else f"the model's saved resize {resize}"
        raise UserError(
            f"{what} is smaller than the {shape[1]}x{shape[2]} crop of --image-shape; "
            f"give --val-resize-size 0 (no resize) or an integer >= {side}"
        )
    return types.SimpleNamespace(shape=tuple(shape), rgb_mean=mean, rgb_std=std, resize=resize)


def val_iter(path, idx, pre, batch_size, nthreads):
    """Centre-crop batches (uint8 NHWC, labels) of a .rec or class folder, in file order; pre.resize first."""
    source = open_checked(path, idx)
    geometry = Geometry(dataclasses.replace(AUGMENT, val_resize_size=pre.resize or 0), pre.shape, train=False)
    it = ImageIter(source, batch_size, pre.shape, geometry, shuffle=False, nthreads=nthreads)
    it.pin_memory = torch.cuda.is_available()
    return it


@torch.inference_mode()
def evaluate(model, val, transform, device, amp_dtype, max_num=None):
    """Run model over val; return (confusion matrix [true, predicted], top-5 hits, images, seconds)."""
    conf, top5, seen, tic = None, 0, 0, time.time()
    for x, y in tqdm(val, total=len(val), desc="score", leave=False, disable=None):  # a bar on a terminal only
        if not len(x):  # no image of the batch decodes: counted by the iterator, reported by the caller
            continue
        if max_num and seen + len(x) > max_num:
            x, y = x[: max_num - seen], y[: max_num - seen]
        y = (y[:, 0] if y.dim() == 2 else y).long().to(device, non_blocking=True)
        with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
            logits = model(transform(x.to(device, non_blocking=True)))
        n = logits.shape[1]
        if conf is None:
            conf = torch.zeros(n * n, dtype=torch.int64, device=device)
        if int(y.max()) >= n or int(y.min()) < 0:
            raise UserError(f"a label of the data is outside [0, {n}), the classes of the model; wrong --data-val?")
        conf += torch.bincount(y * n + logits.argmax(1), minlength=n * n)
        top5 += int((logits.topk(min(5, n), 1).indices == y[:, None]).any(1).sum())
        seen += len(x)
        if max_num and seen >= max_num:
            break
    if conf is None:
        raise UserError("the validation data holds no image")
    return conf.view(n, n).cpu().numpy(), top5, seen, time.time() - tic


def log_summary(stats, tag=""):
    """MXNet's score.py lines (summary_lines after the speed line), each prefixed with tag."""
    if "images_per_second" in stats:
        logging.info("%sFinished with %f images per second", tag, stats["images_per_second"])
    for line in summary_lines(stats):
        logging.info("%s%s", tag, line)


@torch.no_grad()
def quantize_int8(model, calib, transform, num_batches, engine=None):
    """Post-training static int8 quantization for `engine` (default common.qat.DEFAULT_ENGINE), FX graph mode,
    calibrated on num_batches batches of calib."""
    from torch.ao.quantization import get_default_qconfig_mapping, quantize_fx

    engine = qat.engine(engine)
    torch.backends.quantized.engine = engine  # the model runs under it
    model = plain_batchnorm(for_inference(model).to("cpu", memory_format=torch.contiguous_format))
    if isinstance(model, torch.fx.GraphModule):
        model = qat.out_of_place(model)
    prepared = None
    for i, (x, _) in enumerate(calib):
        x = transform(x).contiguous()
        if prepared is None:
            with warnings.catch_warnings():  # the FX flow warns that it is superseded; it is what runs int8 fast
                warnings.simplefilter("ignore")
                prepared = quantize_fx.prepare_fx(model, get_default_qconfig_mapping(engine), (x,))
        prepared(x)
        if i + 1 >= num_batches:
            break
    if prepared is None:
        raise UserError("the calibration data holds no image")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return quantize_fx.convert_fx(prepared)


def score_int8(args, model, pre, device, fp32_stats, val):
    """Score the int8 network (a --qat model's trained quantization, else calibrated on --data-calib) and log the
    change against float32."""
    if device.type != "cpu":
        raise UserError("--dtype int8 runs on the CPU; drop --gpus")
    transform = DeviceTransform(pre, pre.shape, False, device, channels_last=False)
    trained = qat.trained_int8(args.model, args.load_epoch, args.quant_engine)
    if trained is not None:
        (qmodel, engine), how = trained, "qat"
    else:
        engine, how = qat.engine(args.quant_engine), f"calibrated on {args.calib_batches} batches"
        if not args.data_calib:
            logging.info(
                "int8: calibrating on the first %d batches of --data-val (give --data-calib)",
                args.calib_batches,
            )
        calib = val_iter(args.data_calib or args.data_val, "", pre, args.batch_size, args.data_nthreads)
        qmodel = quantize_int8(model, calib, transform, args.calib_batches, engine)
    conf, top5, seen, seconds = evaluate(qmodel, val, transform, device, None, args.max_num_examples)
    stats = summarize(conf, top5, seen, seconds, None)
    log_summary(stats, "int8: ")
    change = f"accuracy {stats['accuracy'] - fp32_stats['accuracy']:+.4f}"
    if "top_k_accuracy_5" in stats:
        change += f", top-5 {stats['top_k_accuracy_5'] - fp32_stats['top_k_accuracy_5']:+.4f}"
    speedup = stats["images_per_second"] / fp32_stats["images_per_second"]
    logging.info("int8 vs float32: %s, speed-up %.2fx (engine %s)", change, speedup, engine)
    return stats | {"engine": engine, "quantization": how}


def image_geometry(pre):
    """The Geometry predict.py reads files with: score.py's centre crop, after resizing the short side to pre.resize
    (when None: to the crop over 0.875, the usual ImageNet evaluation ratio)."""
    resize = pre.resize if pre.resize is not None else round(max(pre.shape[1:]) / 0.875)
    return Geometry(dataclasses.replace(AUGMENT, val_resize_size=resize), pre.shape, train=False)


def load_image(path, geometry):
    """Decode path, resize its short side and centre-crop as geometry does: (H, W, C) uint8 RGB."""
    try:
        with open(path, "rb") as f:
            buf = f.read()
    except OSError as err:
        raise UserError(f"{path}: not a readable image ({err.strerror})") from None
    out, why = np.empty((geometry.height, geometry.width, geometry.channels), np.uint8), []
    if not geometry.load(buf, np.random.default_rng(0), out, why):  # no randomness in evaluation: never drawn
        raise UserError(f"{path}: not a readable image ({why[0] if why else 'does not decode'})")
    return out


def load_batch(paths, geometry, failed):
    """(paths read, their images); each file that cannot be read is skipped with one line on stderr, and listed in
    failed."""
    chunk, images = [], []
    for path in paths:
        try:
            images.append(load_image(path, geometry))
            chunk.append(path)
        except UserError as err:
            print(f"skipped {err}", file=sys.stderr)
            failed.append(path)
    return chunk, images


@torch.inference_mode()
def predict(model, files, pre, device, top_k, batch_size, classes):
    """([{path, top: [{class, name, probability}]}] for each readable file, top_k classes by probability;
    [paths that could not be read])."""
    transform = DeviceTransform(pre, pre.shape, False, device, channels_last=False)
    geometry = image_geometry(pre)
    model = for_inference(model).to(device)  # score.py's form of the network: the same predictions
    results, failed = [], []
    for start in range(0, len(files), batch_size):
        chunk, images = load_batch(files[start : start + batch_size], geometry, failed)
        if not images:
            continue
        batch = torch.from_numpy(np.stack(images)).to(device)
        prob = torch.softmax(model(transform(batch)).float(), dim=1)
        if classes and len(classes) != prob.shape[1]:
            raise UserError(
                f"{len(classes)} class names for a model with {prob.shape[1]} outputs; "
                f"give --synset a file of {prob.shape[1]} lines, one name per class"
            )
        p, idx = prob.topk(min(top_k, prob.shape[1]), dim=1)
        for path, ps, ks in zip(chunk, p.tolist(), idx.tolist()):
            top = [{"class": k, "name": classes[k] if classes else str(k), "probability": q} for k, q in zip(ks, ps)]
            results.append({"path": path, "top": top, "num_classes": prob.shape[1]})
    return results, failed
