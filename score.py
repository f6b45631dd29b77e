"""Score a saved model (the suite's checkpoint, an MXNet checkpoint or a pretrained zoo name) on a .rec or folder.

Prints MXNet's score.py lines (`Finished with S images per second`, `('accuracy', A)`, and `('top_k_accuracy_5', A)`
for a model of more than 5 classes), then macro F1 and per-class accuracy; --report-json (with the network's
parameters and multiply-accumulates), --report-txt and --confusion-png write the full report. Validation takes the
centre crop of --image-shape, as MXNet's ImageRecordIter does, after resizing the short side to --val-resize-size
where one is saved with the model (a torchvision zoo model's own sizes); the preprocessing saved with the
checkpoint is used unless a flag overrides it. `--dtype int8` also quantizes the network (with the quantization a
--qat run trained, else calibrated on --calib-batches batches of --data-calib for --quant-engine) and reports the
accuracy change and the CPU speed-up against float32.
`--preds DIR --gts FILE` scores prediction files instead (predict.py --format json writes them) against a
ground-truth map {image name: class index or name}: accuracy, top-k (k: the classes in each file), macro F1.
"""

import argparse
import json
import logging

from common import flags, options
from common.util import UserError, atomic_write, choice_error, main_guard


def add_score_args(parser):
    """MXNet's score.py flags plus the report and quantization ones."""
    p = parser
    p.add_argument("--model", help="checkpoint prefix (the suite's or MXNet's) or a pretrained name")
    p.add_argument(
        "--load-epoch",
        type=flags.load_epoch,
        help="epoch of the checkpoint, or best (PREFIX-best.json's; default: the last saved)",
    )
    p.add_argument("--data-val", help="the validation data: .rec file(s) or class folders")
    p.add_argument("--data-val-idx", default="", help="the index of the validation data")
    p.add_argument("--image-shape", help="C,H,W fed to the network (default: saved with the model)")
    p.add_argument(
        "--val-resize-size",
        type=flags.integer(min=0),
        help="resize the shorter side to this before the centre crop (default: saved with the model; 0: none)",
    )
    p.add_argument("--rgb-mean", help="a tuple of size 3 for the mean rgb (default: saved with the model)")
    p.add_argument("--rgb-std", help="a tuple of size 3 for the std rgb (default: saved with the model)")
    p.add_argument("--batch-size", type=flags.count(), default=64, help="the batch size")
    p.add_argument("--data-nthreads", type=flags.integer(min=0), default=4, help="number of threads for data decoding")
    p.add_argument("--max-num-examples", type=flags.count(), help="stop after this many images")
    p.add_argument("--gpus", type=str, default="", help="the gpu to use, e.g. 0; empty means the CPU")
    p.add_argument("--dtype", default="float32", help="float32, float16, bfloat16 (autocast) or int8 (CPU)")
    p.add_argument("--synset", help="class names, one per line (default: saved with the model)")
    p.add_argument(
        "--report-json",
        type=flags.output_file(),
        help="write the full report (per-class figures, confusion matrix) here",
    )
    p.add_argument("--report-txt", type=flags.output_file(), help="write the figures and every class's as text here")
    p.add_argument("--confusion-png", type=flags.output_file(), help="draw the confusion matrix into this PNG")
    p.add_argument("--preds", help="score prediction files instead: the folder predict.py --format json wrote")
    p.add_argument("--gts", help="with --preds: the ground truth, a JSON map {image name: class index or name}")
    options.add_int8_args(p)
    p.add_argument(
        "--threads", type=flags.integer(min=0), default=0, help="CPU threads for the network (0: torch's default)"
    )
    return p


@main_guard
def main(argv=None):
    """Score --model on --data-val, or --preds against --gts; write the reports."""
    parser = argparse.ArgumentParser(description="score a model on a dataset", formatter_class=options.HelpFormatter)
    args = add_score_args(parser).parse_args(argv)
    preds = bool(args.preds or args.gts)
    scores_model = bool(args.model and args.data_val) and not preds
    if scores_model == (bool(args.preds and args.gts) and not (args.model or args.data_val)):  # neither, or both
        raise UserError(
            "score a model (give --model and --data-val) or prediction files (give --preds DIR and --gts FILE), "
            "one of the two"
        )
    logging.basicConfig(level=logging.INFO, format="%(asctime)-15s %(message)s")
    from common.predictions import score_predictions, summary_lines  # numpy only: prediction files score fast

    if preds:
        report = {"preds": args.preds, "gts": args.gts}
        report.update(score_predictions(args.preds, args.gts, args.synset))
        logging.info("scored %d prediction files of %s against %s", report["num_examples"], args.preds, args.gts)
        for line in summary_lines(report):
            logging.info("%s", line)
    else:
        report = score_model(args)
    if args.report_txt:
        what = f"predictions {args.preds} against {args.gts}" if preds else f"model {args.model} on {args.data_val}"
        lines = [what, f"images {report['num_examples']}", *summary_lines(report, every_class=True)]
        c = report.get("complexity")
        if c:
            from common.complexity import describe  # torch: already loaded with the model

            lines.insert(2, "complexity " + describe(c["params"], c["macs"]))
        atomic_write(args.report_txt, "".join(f"{line}\n" for line in lines), mode="w")
    if args.confusion_png:
        import numpy as np

        from common import figures

        names = [r["name"] for r in report["per_class"]]
        figures.plot_confusion(args.confusion_png, np.array(report["confusion"]), names)
    if args.report_json:
        atomic_write(args.report_json, json.dumps(report, indent=1) + "\n", mode="w")
    return report


def score_model(args):
    """The report of --model on --data-val (and its int8 form with --dtype int8)."""
    import torch  # after parsing: --help answers before torch loads

    from common import complexity, data, dist, modelzoo, networks, qat
    from common.augment import DeviceTransform
    from common.inference import (
        DTYPES,
        evaluate,
        log_summary,
        resolve_preprocess,
        score_int8,
        val_iter,
    )
    from common.predictions import read_synset, summarize

    logging.info(args)
    if args.dtype not in DTYPES:
        raise choice_error("--dtype", args.dtype, DTYPES)
    qat.engine(args.quant_engine)  # a bad --quant-engine ends here, before any scoring
    if args.threads:
        torch.set_num_threads(args.threads)
    device = dist.get_device(args.gpus)
    model, info = modelzoo.load_model(args.model, args.load_epoch)
    pre = resolve_preprocess(args, info)
    logging.info("loaded %s: network %s %s", info["source"], info["network"], info.get("arguments") or "")
    shape = ",".join(map(str, pre.shape))
    logging.info("preprocessing: image_shape %s, rgb_mean %s, rgb_std %s", shape, pre.rgb_mean, pre.rgb_std)
    if pre.resize:
        logging.info("preprocessing: the short side resized to %d before the centre crop", pre.resize)
    params, macs = complexity.count(model, pre.shape)  # of the network as trained, before BatchNorm is folded
    logging.info("complexity of one %s image: %s", shape, complexity.describe(params, macs))
    classes = read_synset(args.synset) if args.synset else info.get("classes")
    conv = any(isinstance(m, torch.nn.Conv2d) for m in model.modules())
    model = networks.for_inference(model).to(
        device, memory_format=torch.channels_last if conv else torch.preserve_format
    )
    transform = DeviceTransform(pre, pre.shape, False, device, channels_last=conv)
    val = val_iter(args.data_val, args.data_val_idx, pre, args.batch_size, args.data_nthreads)
    classes = classes or val.source.classes  # a model saved without names: the data's (X.classes, class folders)
    amp = DTYPES[args.dtype]
    conf, top5, seen, seconds = evaluate(model, val, transform, device, amp, args.max_num_examples)
    stats = summarize(conf, top5, seen, seconds, classes)
    log_summary(stats)
    skipped = data.skipped_note(val)
    if skipped:  # the images scored are fewer than the records: say how many and why
        logging.info("skipped: %s", skipped)
    report = {"model": args.model, "source": info["source"], "network": info["network"], "dtype": "float32"}
    report.update(preprocess={"image_shape": list(pre.shape), "rgb_mean": pre.rgb_mean, "rgb_std": pre.rgb_std})
    report["preprocess"]["resize"] = pre.resize or 0
    report.update(stats, confusion=conf.tolist(), skipped_images=val.bad_images)
    report["complexity"] = complexity.report(params, macs, pre.shape)
    report["records_without_image"] = val.skipped_no_image
    if args.dtype == "int8":
        report["int8"] = score_int8(args, model.to(memory_format=torch.contiguous_format), pre, device, stats, val)
    elif amp is not None:
        report["dtype"] = args.dtype
    return report


if __name__ == "__main__":
    main()
