"""Top-K classes with probabilities for image files (or every image in the folders given), as text and JSON.

Each image is resized so its short side is the model's resize size (--val-resize-size, else the one saved with the
model: a zoo model's own, a checkpoint's --val-resize-size; else the crop over 0.875) and centre-cropped to
--image-shape, as score.py does, then normalised with the model's saved mean and std. Class names come from
--synset (one per line, MXNet's synset.txt) or from those saved with the checkpoint at training.
--format json --out-dir DIR writes one file per image, DIR/NAME.json, NAME being the image's path under the folder
given (or its file name): {"image": NAME, "path": ..., "num_classes": N, "top_k": [{"class": index, "name": ...,
"score": probability}, ...]}, best first, and DIR/synset.txt, the N class names; `score.py --preds DIR --gts FILE`
scores them. A file that cannot be read is skipped with one line on stderr; the others are printed, then the exit
status is 2.
"""

import argparse
import json
import os
import sys

from common import flags, options
from common.util import UserError, atomic_write, choice_error, main_guard


def list_images(paths):
    """{image file: its name} for the files named (name: the file name) and those found (sorted, recursively) in
    the folders named (name: the path under the folder, with / between parts)."""
    from common.sources import IMAGE_EXTS

    files = {}
    for path in paths:
        if os.path.isdir(path):
            for root, _, names in sorted(os.walk(path)):
                for n in sorted(names):
                    if n.lower().endswith(IMAGE_EXTS):
                        full = os.path.join(root, n)
                        files[full] = os.path.relpath(full, path).replace(os.sep, "/")
        elif os.path.isfile(path):
            files[path] = os.path.basename(path)
        else:
            raise UserError(f"{path}: no such image file or folder")
    if not files:
        raise UserError(f"no images ({', '.join(IMAGE_EXTS)}) in {', '.join(paths)}")
    return files


@main_guard
def main(argv=None):
    """Print the top-K classes of each image (--format json: write a file for each); --json also writes them all."""
    p = argparse.ArgumentParser(description="predict the classes of images", formatter_class=options.HelpFormatter)
    p.add_argument("images", nargs="+", help="image files or folders of images")
    p.add_argument("--model", required=True, help="checkpoint prefix (the suite's or MXNet's) or a pretrained name")
    p.add_argument(
        "--load-epoch",
        type=flags.load_epoch,
        help="epoch of the checkpoint, or best (PREFIX-best.json's; default: the last saved)",
    )
    p.add_argument("--top-k", type=flags.count(), default=5, help="how many classes to show per image")
    p.add_argument("--synset", help="class names, one per line (default: saved with the model)")
    p.add_argument(
        "--json",
        type=flags.output_file(stdout=True),
        help="also write the predictions to this JSON file ('-' for standard output)",
    )
    p.add_argument("--format", default="text", help="text (printed), or json: one file per image in --out-dir")
    p.add_argument("--out-dir", help="--format json: the folder of the prediction files (created)")
    p.add_argument("--image-shape", help="C,H,W fed to the network (default: saved with the model)")
    p.add_argument(
        "--val-resize-size",
        type=flags.integer(min=0),
        help="resize the shorter side to this before the centre crop (default: saved with the model; 0: none)",
    )
    p.add_argument("--rgb-mean", help="mean rgb (default: saved with the model)")
    p.add_argument("--rgb-std", help="std rgb (default: saved with the model)")
    p.add_argument("--batch-size", type=flags.count(), default=32, help="images per forward pass")
    p.add_argument("--gpus", type=str, default="", help="the gpu to use, e.g. 0; empty means the CPU")
    args = p.parse_args(argv)
    if args.format not in ("text", "json"):
        raise choice_error("--format", args.format, ["text", "json"])
    if (args.format == "json") != bool(args.out_dir):
        raise UserError("--format json writes one file per image into --out-dir DIR: give both, or neither")
    from common import dist, modelzoo  # after parsing: --help answers before torch loads
    from common.inference import predict, resolve_preprocess
    from common.predictions import read_synset, write_predictions

    names = list_images(args.images)
    files = list(names)
    if args.format == "json" and len(set(names.values())) < len(names):
        raise UserError("--format json: two of the images given have the same file name; give their folder instead")
    device = dist.get_device(args.gpus)
    model, info = modelzoo.load_model(args.model, args.load_epoch)
    pre = resolve_preprocess(args, info)
    classes = read_synset(args.synset) if args.synset else info.get("classes")
    results, failed = predict(model.to(device), files, pre, device, max(1, args.top_k), args.batch_size, classes)
    text = json.dumps(results, indent=1) + "\n"
    if args.format == "json":
        write_predictions(results, names, args.out_dir, classes)
        print(f"wrote {len(results)} prediction files to {args.out_dir}", file=sys.stderr)
    elif args.json != "-":
        for r in results:
            print(r["path"])
            for rank, t in enumerate(r["top"], start=1):
                print(f"  {rank}. {t['probability']:.4f}  {t['name']} ({t['class']})")
    if args.json == "-":
        print(text, end="")
    elif args.json:
        atomic_write(args.json, text, mode="w")
    if failed:  # after every readable image is printed and written
        raise UserError(f"{len(failed)} of {len(files)} images could not be read (first: {failed[0]}); see above")
    return results


if __name__ == "__main__":
    main()
