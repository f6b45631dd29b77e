"""Fine-tune a pretrained model (the suite's checkpoint, an MXNet checkpoint or a zoo name) on new classes.

The network is kept up to --layer-before-fullc (default: the layer that feeds the last classifier) and a new
fully connected classifier with --num-classes outputs is put behind it; every other weight is the pretrained one.
--freeze-backbone trains the new classifier only; --pretrained-lr-mult sets the learning rate of the pretrained
layers to that fraction of --lr (MXNet's lr_mult, an optimizer parameter group; any optimizer).
--qat 1 fine-tunes quantization-aware (common/qat.py): tools/export.py --format int8 and score.py --dtype int8 then
use the quantization it trained.
Data: a .rec or a folder of class subfolders.
PREFIX-symbol.json records the pretrained network's arguments and each classifier replacement, so score.py,
predict.py, tools/export.py and a further fine-tune rebuild the fine-tuned network (common/networks.rebuild).
"""

import argparse
import logging
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from common import flags, options  # noqa: E402 - flags only: --help answers before torch loads
from common.util import UserError, main_guard, parse_shape  # noqa: E402


def build_parser():
    """MXNet's fine-tune flags and defaults, with the fit and data groups."""
    # conflict_handler: the Fine-tune group's --load-epoch (MXNet's meaning here: the pretrained model's epoch)
    # replaces the Training group's (resume); a fine-tune run starts from the pretrained model, as in MXNet
    parser = argparse.ArgumentParser(
        description="fine-tune a pretrained model",
        formatter_class=options.HelpFormatter,
        conflict_handler="resolve",
    )
    options.add_fit_args(parser)
    options.add_data_args(parser)
    aug = options.add_data_aug_args(parser)
    options.set_data_aug_level(aug, 2)
    ft = parser.add_argument_group("Fine-tune", "the pretrained model")
    ft.add_argument("--pretrained-model", required=True, help="checkpoint prefix (ours or MXNet's) or a zoo name")
    ft.add_argument(
        "--load-epoch",
        "--pretrained-epoch",
        dest="pretrained_epoch",
        type=flags.load_epoch,
        help="epoch of the pretrained checkpoint, or best (MXNet's fine-tune.py --load-epoch; default: the last)",
    )
    ft.add_argument("--layer-before-fullc", default="auto", help="the last layer kept; auto: the classifier's input")
    ft.add_argument("--freeze-backbone", type=flags.switch(), default=0, help="1: train the new classifier only")
    ft.add_argument(
        "--pretrained-lr-mult", type=flags.number(min=0), default=1.0, help="learning-rate factor of pretrained layers"
    )
    parser.set_defaults(
        load_epoch=None,  # no resume: see conflict_handler
        image_shape=None,
        rgb_mean=None,
        rgb_std=None,
        num_epochs=30,
        lr=0.01,
        lr_step_epochs="20",
        wd=0,
        mom=0,
    )
    return parser


def parse_args(argv=None):
    """The parsed command line."""
    parser = build_parser()
    return flags.at_most(parser, options.parse_args(parser, argv), "top_k", "num_classes")


def prepare(args):
    """Load the pretrained model, take its preprocessing where no flag gives one, and replace its classifier.

    Returns (model, name of the new classifier, checkpoint.Pretrained: what PREFIX-symbol.json records of it).
    """
    from torch import nn

    from common import checkpoint, data, modelzoo, mximport, networks  # after parsing: see the imports above

    model, info = modelzoo.load_model(args.pretrained_model, args.pretrained_epoch, "--pretrained-model")
    pre = info.get("preprocess") or {}
    args.image_shape = args.image_shape or ",".join(str(v) for v in pre.get("image_shape", (3, 224, 224)))
    args.rgb_mean = args.rgb_mean or ",".join(str(v) for v in pre.get("rgb_mean", mximport.MXNET_MEAN))
    args.rgb_std = args.rgb_std or ",".join(str(v) for v in pre.get("rgb_std", mximport.MXNET_STD))
    if not data.resolve_num_classes(args, None):  # not given: the count of --data-train's classes
        raise UserError("--num-classes is required without --data-train: the number of classes of the new data")
    args.network = info["network"]
    before = dict(model.state_dict())
    shape = parse_shape(args.image_shape)
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]  # the last one: the pretrained classifier
    model, head, dropped = networks.replace_head(model, args.layer_before_fullc, args.num_classes, shape)
    # What PREFIX-symbol.json needs to rebuild this network: the pretrained one's arguments, then this replacement.
    step = {"pretrained_source": info["source"].split()[0].lower(), "layer_before_fullc": args.layer_before_fullc}
    step.update(pretrained_num_classes=linears[-1].out_features, image_shape=list(shape))
    steps = list(info.get("fine_tune") or []) + [dict(step, num_classes=args.num_classes)]
    pretrained = checkpoint.Pretrained(arguments=dict(info.get("arguments") or {}), fine_tune=steps)
    logging.info("fine-tuning %s (%s) for %d classes", info["source"], info["network"], args.num_classes)
    kept = [k for k in model.state_dict() if k in before and not k.startswith(head + ".")]
    logging.info("loaded %d pretrained arrays; reinitialised the new classifier %s", len(kept), head)
    ignored = sorted({k.split(".")[0] for k in before if k not in kept})
    if ignored:
        logging.info("ignored the pretrained layers after --layer-before-fullc: %s", ", ".join(ignored))
    if dropped and args.layer_before_fullc == "auto":
        logging.info("the pretrained classifier (%s) is replaced by one with %d outputs", dropped[-1], args.num_classes)
    return model, head, pretrained


def tune_backbone(model, head, freeze, lr_mult):
    """Freeze the pretrained layers, or give them lr_mult times the learning rate (optim.param_groups reads it)."""
    for name, p in model.named_parameters():
        if name.startswith(head + "."):
            continue
        if freeze:
            p.requires_grad_(False)
        else:
            p.lr_mult = lr_mult


@main_guard
def main(argv=None):
    """Fine-tune --pretrained-model on --data-train, checkpoints under --model-prefix."""
    args = parse_args(argv)
    import torch

    from common import data, dist, fit  # after parsing: torch loads only for a run

    logging.basicConfig(level=logging.INFO, format="%(asctime)-15s %(message)s")
    torch.manual_seed(args.seed)  # the new classifier's initial weights follow --seed
    model, head, pretrained = prepare(args)  # before the workers start: a bad pretrained model is named once
    tune_backbone(model, head, args.freeze_backbone, args.pretrained_lr_mult)
    workers = dist.local_workers(args)
    if workers > 1:  # several devices here: this process starts one worker per device and waits for them
        sys.exit(dist.spawn_local(workers))
    defaults = options.defaults(build_parser())
    return fit.fit(args, model, data.get_rec_iter, pretrained=pretrained, defaults=defaults)


if __name__ == "__main__":
    main()
