"""Inference shared by score.py, predict.py, tools/export.py and tools/convert_mxnet.py.

  resolve_preprocess(flags, info)  the model's saved preprocessing, overridden by --image-shape/--rgb-mean/--rgb-std
  val_iter(path, idx, pre, ...)    centre-crop batches of a .rec or class folder, in file order
  evaluate / summarize / log_summary   a confusion matrix, its figures, MXNet's score.py lines
  quantize_int8(model, calib, ...) post-training static int8 quantization (INT8_ENGINE), FX graph mode
  score_int8(...)                  quantize, score again and log the change against float32
  predict(model, files, ...)       top-K classes of image files (predict.py), unreadable files skipped and listed
The device choice is common.dist.get_device; loading a model by name is common.modelzoo.load_model.
"""

import logging
import operator
import sys
import time
import types
import warnings

import cv2
import numpy as np
import torch
from tqdm import tqdm

from common.augment import DeviceTransform, Geometry
from common.data import ImageIter, open_checked
from common.image import decode
from common.mximport import MXNET_MEAN, MXNET_STD
from common.networks import for_inference, plain_batchnorm
from common.options import AUGMENT
from common.util import UserError, parse_floats, parse_shape

DTYPES = {"float32": None, "float16": torch.float16, "bfloat16": torch.bfloat16, "int8": None}


def resolve_preprocess(args, info):
    """The preprocessing to use: the model's saved values, overridden by the flags; returns a namespace."""
    saved = info.get("preprocess") or {}
    shape = parse_shape(args.image_shape) if args.image_shape else tuple(saved.get("image_shape") or (3, 224, 224))
    mean = args.rgb_mean or ",".join(str(v) for v in saved.get("rgb_mean", MXNET_MEAN))
    std = args.rgb_std or ",".join(str(v) for v in saved.get("rgb_std", MXNET_STD))
    parse_floats(mean, "rgb-mean")
    parse_floats(std, "rgb-std")
    return types.SimpleNamespace(shape=tuple(shape), rgb_mean=mean, rgb_std=std, resize=saved.get("resize"))


def val_iter(path, idx, pre, batch_size, nthreads):
    """Centre-crop batches (uint8 NHWC, labels) of a .rec or class folder, in file order."""
    source = open_checked(path, idx)
    geometry = Geometry(AUGMENT, pre.shape, train=False)
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


def summarize(conf, top5, seen, seconds, classes):
    """Accuracy, top-5 (only when there are more than 5 classes: else it is 1), macro F1 and per-class figures."""
    diag, support, predicted = np.diag(conf), conf.sum(1), conf.sum(0)
    recall = np.divide(diag, support, out=np.zeros(len(diag)), where=support > 0)
    precision = np.divide(diag, predicted, out=np.zeros(len(diag)), where=predicted > 0)
    f1 = np.divide(2 * precision * recall, precision + recall, out=np.zeros(len(diag)), where=precision + recall > 0)
    present = support > 0
    names = classes if classes and len(classes) == len(diag) else [str(i) for i in range(len(diag))]
    per_class = [
        {"class": i, "name": names[i], "support": int(support[i]), "accuracy": float(recall[i])}
        | {"precision": float(precision[i]), "f1": float(f1[i])}
        for i in range(len(diag))
    ]
    stats = {"num_examples": int(seen), "accuracy": float(diag.sum() / max(seen, 1))}
    if len(diag) > 5:
        stats["top_k_accuracy_5"] = float(top5 / max(seen, 1))
    stats["macro_f1"] = float(f1[present].mean()) if present.any() else 0.0
    return stats | {"images_per_second": seen / max(seconds, 1e-9), "per_class": per_class}


def log_summary(stats, tag=""):
    """MXNet's score.py lines, then macro F1 and the per-class accuracy (the 10 worst when there are many)."""
    logging.info("%sFinished with %f images per second", tag, stats["images_per_second"])
    logging.info("%s%s", tag, ("accuracy", stats["accuracy"]))
    if "top_k_accuracy_5" in stats:  # a model of 5 classes or fewer has every class in its top 5
        logging.info("%s%s", tag, ("top_k_accuracy_5", stats["top_k_accuracy_5"]))
    logging.info("%s%s", tag, ("macro_f1", stats["macro_f1"]))
    rows = [r for r in stats["per_class"] if r["support"]]
    if len(rows) > 20:
        rows = sorted(rows, key=lambda r: r["accuracy"])[:10]
        logging.info("%sper-class accuracy, the 10 lowest of %d classes:", tag, len(stats["per_class"]))
    for r in rows:
        logging.info(
            "%s  class %d (%s): accuracy %.4f of %d, f1 %.4f",
            *(tag, r["class"], r["name"], r["accuracy"], r["support"], r["f1"]),
        )


def read_synset(path):
    """Class names from a synset / labels file, one per line."""
    try:
        with open(path) as f:
            return [line.strip() for line in f if line.strip()]
    except OSError as err:
        raise UserError(f"--synset {path}: cannot read it ({err.strerror})") from None


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
    model = plain_batchnorm(for_inference(model).to("cpu", memory_format=torch.contiguous_format))
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


def score_int8(args, model, pre, device, fp32_stats, val):
    """Quantize to int8 (calibrated on --data-calib), score again and log the change against float32."""
    if device.type != "cpu":
        raise UserError("--dtype int8 runs on the CPU; drop --gpus")
    calib_path = args.data_calib or args.data_val
    if not args.data_calib:
        logging.info("int8: calibrating on the first %d batches of --data-val (give --data-calib)", args.calib_batches)
    calib = val_iter(calib_path, "", pre, args.batch_size, args.data_nthreads)
    transform = DeviceTransform(pre, pre.shape, False, device, channels_last=False)
    qmodel = quantize_int8(model, calib, transform, args.calib_batches)
    conf, top5, seen, seconds = evaluate(qmodel, val, transform, device, None, args.max_num_examples)
    stats = summarize(conf, top5, seen, seconds, None)
    log_summary(stats, "int8: ")
    change = f"accuracy {stats['accuracy'] - fp32_stats['accuracy']:+.4f}"
    if "top_k_accuracy_5" in stats:
        change += f", top-5 {stats['top_k_accuracy_5'] - fp32_stats['top_k_accuracy_5']:+.4f}"
    speedup = stats["images_per_second"] / fp32_stats["images_per_second"]
    logging.info("int8 vs float32: %s, speed-up %.2fx", change, speedup)
    return stats


def load_image(path, pre):
    """Decode path, resize its short side and centre-crop to pre.shape: (H, W, C) uint8 RGB."""
    try:
        with open(path, "rb") as f:
            img, _ = decode(f.read(), pre.shape[0])
    except (OSError, ValueError) as err:
        raise UserError(f"{path}: not a readable image ({err})") from None
    c, h, w = pre.shape
    side = pre.resize or round(max(h, w) / 0.875)
    scale = side / min(img.shape[:2])
    size = (max(w, round(img.shape[1] * scale)), max(h, round(img.shape[0] * scale)))
    img = cv2.resize(img, size, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    y, x = (img.shape[0] - h) // 2, (img.shape[1] - w) // 2
    img = img[y : y + h, x : x + w]
    return img.reshape(h, w, c)


def load_batch(paths, pre, failed):
    """(paths read, their images); each file that cannot be read is skipped with one line on stderr, and listed in
    failed."""
    chunk, images = [], []
    for path in paths:
        try:
            images.append(load_image(path, pre))
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
    results, failed = [], []
    for start in range(0, len(files), batch_size):
        chunk, images = load_batch(files[start : start + batch_size], pre, failed)
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
            results.append({"path": path, "top": top})
    return results, failed
