"""Score a saved model (the suite's checkpoint, an MXNet checkpoint or a pretrained zoo name) on a .rec or folder.

Prints MXNet's score.py lines (`Finished with S images per second`, `('accuracy', A)`, `('top_k_accuracy_5', A)`),
then macro F1 and per-class accuracy; --report-json and --confusion-png write the full report. Validation takes the
centre crop of --image-shape, as MXNet's ImageRecordIter does; the preprocessing saved with the checkpoint is used
unless a flag overrides it. `--dtype int8` also quantizes the network (calibrated on --data-calib) and reports
the accuracy change and the CPU speed-up against float32.
"""

import argparse
import json
import logging
import time
import types

import numpy as np
import torch

from common import data, modelzoo
from common.augment import DeviceTransform, Geometry
from common.fit import get_device
from common.util import UserError, atomic_write, choice_error, main_guard

DTYPES = {"float32": None, "float16": torch.float16, "bfloat16": torch.bfloat16, "int8": None}


def add_score_args(parser):
    """MXNet's score.py flags plus the report and quantization ones."""
    p = parser
    p.add_argument("--model", required=True, help="checkpoint prefix (the suite's or MXNet's) or a pretrained name")
    p.add_argument("--load-epoch", type=int, help="epoch of the checkpoint (default: the last saved)")
    p.add_argument("--data-val", required=True, help="the validation data: .rec file(s) or class folders")
    p.add_argument("--data-val-idx", default="", help="the index of the validation data")
    p.add_argument("--image-shape", help="C,H,W fed to the network (default: saved with the model)")
    p.add_argument("--rgb-mean", help="a tuple of size 3 for the mean rgb (default: saved with the model)")
    p.add_argument("--rgb-std", help="a tuple of size 3 for the std rgb (default: saved with the model)")
    p.add_argument("--batch-size", type=int, default=64, help="the batch size")
    p.add_argument("--data-nthreads", type=int, default=4, help="number of threads for data decoding")
    p.add_argument("--max-num-examples", type=int, help="stop after this many images")
    p.add_argument("--gpus", type=str, default="", help="the gpu to use, e.g. 0; empty means the CPU")
    p.add_argument("--dtype", default="float32", help="float32, float16, bfloat16 (autocast) or int8 (CPU)")
    p.add_argument("--synset", help="class names, one per line (default: saved with the model)")
    p.add_argument("--report-json", help="write the full report (per-class figures, confusion matrix) here")
    p.add_argument("--confusion-png", help="draw the confusion matrix into this PNG")
    p.add_argument("--data-calib", help="int8: calibration data (.rec or folder; default: --data-val)")
    p.add_argument("--calib-batches", type=int, default=4, help="int8: number of calibration batches")
    p.add_argument("--threads", type=int, default=0, help="CPU threads for the network (0: torch's default)")
    return p


def resolve_preprocess(args, info):
    """The preprocessing to use: the model's saved values, overridden by the flags; returns a namespace."""
    saved = info.get("preprocess") or {}
    shape = data.parse_shape(args.image_shape) if args.image_shape else tuple(saved.get("image_shape") or (3, 224, 224))
    mean = args.rgb_mean or ",".join(str(v) for v in saved.get("rgb_mean", modelzoo.MXNET_MEAN))
    std = args.rgb_std or ",".join(str(v) for v in saved.get("rgb_std", modelzoo.MXNET_STD))
    data.parse_floats(mean, "rgb-mean")
    data.parse_floats(std, "rgb-std")
    return types.SimpleNamespace(shape=tuple(shape), rgb_mean=mean, rgb_std=std, resize=saved.get("resize"))


def val_iter(path, idx, pre, batch_size, nthreads):
    """Centre-crop batches (uint8 NHWC, labels) of a .rec or class folder, in file order."""
    source = data.open_source(path, idx)
    geometry = Geometry(types.SimpleNamespace(), pre.shape, train=False)
    it = data.ImageIter(source, batch_size, pre.shape, geometry, shuffle=False, nthreads=nthreads)
    it.pin_memory = torch.cuda.is_available()
    return it


@torch.inference_mode()
def evaluate(model, val, transform, device, amp_dtype, max_num=None):
    """Run model over val; return (confusion matrix [true, predicted], top-5 hits, images, seconds)."""
    conf, top5, seen, tic = None, 0, 0, time.time()
    for x, y in val:
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
    """Accuracy, top-5, macro F1 and per-class figures from a confusion matrix."""
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
    return {
        "num_examples": int(seen),
        "accuracy": float(diag.sum() / max(seen, 1)),
        "top_k_accuracy_5": float(top5 / max(seen, 1)),
        "macro_f1": float(f1[present].mean()) if present.any() else 0.0,
        "images_per_second": seen / max(seconds, 1e-9),
        "per_class": per_class,
    }


def log_summary(stats, tag=""):
    """MXNet's score.py lines, then macro F1 and the per-class accuracy (the 10 worst when there are many)."""
    logging.info("%sFinished with %f images per second", tag, stats["images_per_second"])
    logging.info("%s%s", tag, ("accuracy", stats["accuracy"]))
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


def draw_confusion(path, conf, classes):
    """The confusion matrix (rows true, columns predicted) as a PNG, written atomically."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    n = len(conf)
    fig, ax = plt.subplots(figsize=(min(4 + n * 0.3, 14),) * 2)
    ax.imshow(conf, cmap="Blues")
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if n <= 30:
        names = classes if classes and len(classes) == n else [str(i) for i in range(n)]
        ax.set_xticks(range(n), names, rotation=90, fontsize="small")
        ax.set_yticks(range(n), names, fontsize="small")
        for i, j in zip(*np.nonzero(conf)):
            ax.text(j, i, str(conf[i, j]), ha="center", va="center", fontsize="x-small")
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    atomic_write(path, buf.getvalue())


def read_synset(path):
    """Class names from a synset / labels file, one per line."""
    try:
        with open(path) as f:
            return [line.strip() for line in f if line.strip()]
    except OSError as err:
        raise UserError(f"--synset {path}: cannot read it ({err.strerror})") from None


def score_int8(args, model, pre, device, fp32_stats, val):
    """Quantize to int8 (calibrated on --data-calib), score again and log the change against float32."""
    from tools.export import quantize_int8

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
    logging.info(
        "int8 vs float32: accuracy %+.4f, top-5 %+.4f, speed-up %.2fx",
        stats["accuracy"] - fp32_stats["accuracy"],
        stats["top_k_accuracy_5"] - fp32_stats["top_k_accuracy_5"],
        stats["images_per_second"] / fp32_stats["images_per_second"],
    )
    return stats


@main_guard
def main(argv=None):
    """Score --model on --data-val."""
    args = add_score_args(argparse.ArgumentParser(description="score a model on a dataset")).parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)-15s %(message)s")
    logging.info(args)
    if args.dtype not in DTYPES:
        raise choice_error("--dtype", args.dtype, DTYPES)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = get_device(args.gpus)
    model, info = modelzoo.load_model(args.model, args.load_epoch)
    pre = resolve_preprocess(args, info)
    logging.info("loaded %s: network %s %s", info["source"], info["network"], info.get("arguments") or "")
    shape = ",".join(map(str, pre.shape))
    logging.info("preprocessing: image_shape %s, rgb_mean %s, rgb_std %s", shape, pre.rgb_mean, pre.rgb_std)
    if pre.resize:
        logging.info("this model expects images resized to %d pixels on the short side before the crop", pre.resize)
    classes = read_synset(args.synset) if args.synset else info.get("classes")
    conv = any(isinstance(m, torch.nn.Conv2d) for m in model.modules())
    model = modelzoo.for_inference(model).to(
        device, memory_format=torch.channels_last if conv else torch.preserve_format
    )
    transform = DeviceTransform(pre, pre.shape, False, device, channels_last=conv)
    val = val_iter(args.data_val, args.data_val_idx, pre, args.batch_size, args.data_nthreads)
    amp = DTYPES[args.dtype]
    conf, top5, seen, seconds = evaluate(model, val, transform, device, amp, args.max_num_examples)
    stats = summarize(conf, top5, seen, seconds, classes)
    log_summary(stats)
    report = {"model": args.model, "source": info["source"], "network": info["network"], "dtype": "float32"}
    report.update(preprocess={"image_shape": list(pre.shape), "rgb_mean": pre.rgb_mean, "rgb_std": pre.rgb_std})
    report.update(stats, confusion=conf.tolist())
    if args.dtype == "int8":
        report["int8"] = score_int8(args, model.to(memory_format=torch.contiguous_format), pre, device, stats, val)
    elif amp is not None:
        report["dtype"] = args.dtype
    if args.confusion_png:
        draw_confusion(args.confusion_png, conf, classes)
    if args.report_json:
        atomic_write(args.report_json, json.dumps(report, indent=1) + "\n", mode="w")
    return report


if __name__ == "__main__":
    main()
