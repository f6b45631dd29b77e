"""The command-line flag groups of training (fit), data and augmentation, and the settings built from them.

This module imports nothing heavy (no torch, numpy or OpenCV), so an entry script parses its command line, and
answers --help, before the libraries load; the modules that act on the flags (fit, data, augment, optim) take
their names and defaults from here, declared once.
"""

import argparse
import dataclasses
import sys

from common import flags

# Pillow's decompression-bomb guard: no real dataset has an image of more pixels
MAX_IMAGE_PIXELS = 178_956_970
LOSSES = {"ce": "cross-entropy", "nll_loss": "nll-loss", "nll": "nll-loss"}
DTYPES = ("float32", "float16", "bfloat16")
LOSS_TYPES = ("softmax", "am-softmax")

OPTIMIZERS = (
    *("sgd", "nag", "adam", "adamw", "rmsprop", "adagrad", "lars", "lamb", "adadelta", "adamax", "nadam"),
    *("signum", "ftml", "ftrl", "sgld", "dcasgd", "lbsgd", "asgd"),
)


INITIALIZERS = ("default", "xavier", "msra", "orthogonal", "normal", "uniform", "one", "zero")


WARMUPS = ("linear", "power2", "sqrt")


def _networks():
    """The network names, for --help (symbols/__init__ imports no torch: the families load when built)."""
    import symbols

    return symbols.list_networks()


def add_fit_args(parser):
    """Add MXNet's training flags (the `Training` group) and the suite's own."""
    t = parser.add_argument_group("Training", "model training")
    t.add_argument("--network", type=str, help="the neural network to use: " + ", ".join(_networks()))
    t.add_argument(
        "--num-layers", type=flags.count(), help="number of layers in the neural network, required by resnet etc."
    )
    # Family arguments: unset (None) leaves the family's own default in place (get_network drops None values).
    t.add_argument("--batch-norm", type=int, choices=(0, 1), help="vgg: 1 adds BatchNorm after each convolution")
    t.add_argument(
        "--multiplier",
        type=flags.number(above=0),
        help="width multiplier of mobilenet, mobilenetv2, shufflenetv2 (1.0)",
    )
    t.add_argument("--num-group", type=flags.count(), help="resnext: groups of the 3x3 bottleneck convolution (32)")
    _add_device_args(t)
    t.add_argument("--num-epochs", type=flags.integer(min=0), default=100, help="max num of epochs")
    t.add_argument("--lr", type=flags.number(min=0), default=0.1, help="initial learning rate")
    t.add_argument("--lr-factor", type=flags.number(min=0), default=0.1, help="the ratio to reduce lr on each step")
    t.add_argument("--lr-step-epochs", type=str, help="the epochs to reduce the lr, e.g. 30,60; or pow2 for poly")
    t.add_argument("--initializer", type=str, default="default", help="the initializer: " + ", ".join(INITIALIZERS))
    t.add_argument("--optimizer", type=str, default="sgd", help="the optimizer type: " + ", ".join(OPTIMIZERS))
    t.add_argument("--mom", type=flags.fraction(below=True), default=0.9, help="momentum for sgd")
    t.add_argument("--wd", type=flags.number(min=0), default=0.0001, help="weight decay for sgd")
    t.add_argument("--batch-size", type=flags.count(), default=128, help="the batch size")
    t.add_argument("--disp-batches", type=flags.count(), default=20, help="show progress for every n batches")
    t.add_argument("--model-prefix", type=str, help="model prefix")
    t.add_argument(
        "--log-file", type=str, default="", help="every log line and the full settings (default: PREFIX.log)"
    )
    t.add_argument("--save-period", type=flags.count(), default=1, help="params saving period")
    t.add_argument(
        "--monitor", type=flags.integer(min=0), default=0, help="log network parameters every N iters if larger than 0"
    )
    t.add_argument(
        "--load-epoch",
        type=str,
        help="load the model on an epoch using the model-prefix; auto: the last complete one; best: PREFIX-best.json's",
    )
    t.add_argument(
        "--keep-last",
        type=flags.count(min=1),
        help="keep the newest N saved epochs' .params/.states and the best one, remove older (default: all, as MXNet)",
    )
    t.add_argument(
        "--top-k", type=flags.integer(min=0), default=0, help="report the top-k accuracy. 0 means no report."
    )
    t.add_argument("--loss", type=str, default="", help="also report loss metrics: ce (cross-entropy), nll_loss, nll")
    t.add_argument("--test-io", type=flags.switch(), default=0, help="1 means test reading speed without training")
    t.add_argument("--dtype", type=str, default="float32", help="precision: float32, float16 or bfloat16 (AMP)")
    t.add_argument("--macrobatch-size", type=flags.integer(min=0), default=0, help="distributed effective batch size")
    t.add_argument(
        "--warmup-epochs",
        type=flags.integer(min=0),
        default=5,
        help="epochs to ramp the lr up to the macro-batch scale; acts only with --macrobatch-size larger than the "
        "total batch (gradients accumulate)",
    )
    t.add_argument("--warmup-strategy", type=str, default="linear", help="ramp-up: " + ", ".join(WARMUPS))
    _add_suite_fit_args(t)
    return t


def _add_device_args(t):
    """The Training group's devices and distribution: --gpus, --kv-store, workers, gradient compression."""
    t.add_argument(
        "--gpus", type=str, help="list of gpus to run, e.g. 0 or 0,2,5; auto: every visible GPU. empty means using cpu"
    )
    t.add_argument(
        "--kv-store",
        type=str,
        default="device",
        help="local, device (one host); dist_sync, dist_device_sync, dist_sync_device, horovod, nccl (launch.py)",
    )
    t.add_argument(
        "--num-workers", type=flags.count(), default=1, help="with --kv-store local/device on the CPU: processes"
    )
    t.add_argument("--gc-type", type=str, default="none", help="gradient compression: none, fp16, bf16 or 2bit")
    t.add_argument(
        "--gc-threshold", type=flags.number(above=0), default=0.5, help="threshold of 2bit gradient compression"
    )


def _add_suite_fit_args(t):
    """The Training group's flags that MXNet's fit did not have (recipes, formats, reports)."""
    t.add_argument("--seed", type=flags.seed(), default=0, help="seed of weights, data order and augmentation")
    t.add_argument(
        "--label-smoothing", type=flags.fraction(below=True), default=0.0, help="label smoothing of the training loss"
    )
    t.add_argument(
        "--cosine", type=flags.switch(), default=0, help="1: cosine learning-rate decay to 0 over --num-epochs"
    )
    t.add_argument(
        "--ema",
        type=flags.fraction(below=True),
        default=0.0,
        help="decay of an exponential moving average of the weights",
    )
    t.add_argument("--compile", type=flags.switch(), default=0, help="1: torch.compile the network")
    t.add_argument("--channels-last", type=flags.switch(), default=1, help="1: NHWC memory format for conv networks")
    t.add_argument("--tensorboard", type=str, default="", help="also write TensorBoard scalars to this folder")
    t.add_argument(
        "--profile-worker-suffix",
        type=str,
        default="",
        help="write a torch profiler trace of the first training steps to this file (rankN_ prefixed when distributed)",
    )
    t.add_argument(
        "--profile-server-suffix",
        type=str,
        default="",
        help="MXNet's parameter-server profile: no servers here; rank 0 writes its trace (all-reduce included) to it",
    )
    for add in (_add_regularisation_args, _add_schedule_args, _add_loss_args, _add_memory_args):
        add(t)
    _add_quantization_args(t)


def _add_regularisation_args(t):
    """Mixing, gradient clipping, weight decay by parameter kind, SAM (today's recipes)."""
    t.add_argument(
        "--mixup-alpha",
        type=flags.number(min=0),
        default=0.0,
        help="mixup: mix each image with another of the batch, Beta(alpha, alpha) weights, soft targets (0: off)",
    )
    t.add_argument(
        "--cutmix-alpha",
        type=flags.number(min=0),
        default=0.0,
        help="cutmix: paste a box of another image of the batch, Beta(alpha, alpha) area (0: off); with "
        "--mixup-alpha too, one of the two per batch",
    )
    t.add_argument(
        "--clip-grad-norm",
        type=flags.number(above=0),
        help="clip the gradient's global L2 norm to this before each step (default: no clipping)",
    )
    t.add_argument(
        "--norm-weight-decay",
        type=flags.number(min=0),
        help="weight decay of normalisation layers' weights and biases (default: --wd on gammas, none on betas)",
    )
    t.add_argument(
        "--bias-weight-decay",
        type=flags.number(min=0),
        help="weight decay of the other layers' biases (default: none, as MXNet)",
    )
    t.add_argument(
        "--sam-rho",
        type=flags.number(min=0),
        default=0.0,
        help="sharpness-aware minimisation around --optimizer: the step takes the gradient at the weights moved "
        "rho along the normalised gradient (two forward/backward passes; 0: off)",
    )


def _add_schedule_args(t):
    """Rate on a plateau, early stopping, the rate finder."""
    t.add_argument(
        "--lr-plateau",
        type=flags.count(),
        help="multiply the lr by --lr-factor each time Validation-accuracy has not improved for N epochs (on top of "
        "--lr-step-epochs or --cosine and the warm-up)",
    )
    t.add_argument(
        "--early-stop",
        type=flags.count(),
        help="stop when Validation-accuracy has not improved for N epochs; the best epoch is saved whatever "
        "--save-period says and kept as --load-epoch best",
    )
    t.add_argument(
        "--lr-find",
        type=flags.switch(),
        default=0,
        help="1: sweep the lr exponentially over training batches, draw the loss against it, print 'suggested lr=X' "
        "(the steepest fall of the smoothed loss); nothing is trained or saved",
    )
    t.add_argument("--lr-find-start", type=flags.number(above=0), default=1e-7, help="--lr-find: the first rate")
    t.add_argument("--lr-find-end", type=flags.number(above=0), default=10.0, help="--lr-find: the last rate")
    t.add_argument(
        "--lr-find-steps",
        type=flags.count(min=10),
        default=200,
        help="--lr-find: batches of the sweep; it ends early when the loss explodes",
    )
    t.add_argument(
        "--lr-find-plot",
        type=flags.output_file(create=True),
        help="--lr-find: the PNG of loss against rate (default: PREFIX-lr-find.png, or lr-find.png without a prefix)",
    )


def _add_loss_args(t):
    """The training loss and teachers: additive-margin softmax, distillation, mutual learning."""
    t.add_argument(
        "--loss-type",
        choices=LOSS_TYPES,
        default="softmax",
        help="softmax cross-entropy, or am-softmax: a cosine classifier trained with an additive margin",
    )
    t.add_argument(
        "--am-margin", type=flags.number(min=0, below=1), default=0.35, help="am-softmax: the margin m on the cosine"
    )
    t.add_argument(
        "--am-scale", type=flags.number(above=0), default=30.0, help="am-softmax: the scale s of the cosine logits"
    )
    t.add_argument(
        "--distill-from",
        type=str,
        default="",
        help="distil from this teacher: a checkpoint prefix (the suite's or MXNet's; its last epoch) or a zoo name",
    )
    t.add_argument(
        "--distill-alpha",
        type=flags.fraction(),
        default=0.5,
        help="weight a of the teacher's (or peer's) term: (1-a)*CE + a*T^2*KL(teacher_T || student_T)",
    )
    t.add_argument(
        "--distill-temperature",
        type=flags.number(above=0),
        default=4.0,
        help="temperature T that softens the teacher's (or peer's) and the student's outputs",
    )
    t.add_argument(
        "--mutual-learning",
        type=flags.integer(min=1, max=2),
        default=1,
        help="networks trained together: 2 is deep mutual learning, each also learning from the other's softened "
        "output (--distill-alpha, --distill-temperature); the second is saved under PREFIX-peer",
    )


def _add_memory_args(t):
    """Memory: activation checkpointing."""
    t.add_argument(
        "--activation-checkpointing",
        type=flags.switch(),
        default=0,
        help="1: residual and inception blocks recompute their activations in backward (MXNet's memory mirror, "
        "MXNET_BACKWARD_DO_MIRROR): less memory for about one more forward pass",
    )


def _add_quantization_args(t):
    """Quantization-aware training."""
    t.add_argument(
        "--qat",
        type=flags.switch(),
        default=0,
        help="1: quantization-aware training (torch.ao, int8 simulated in training); tools/export.py --format int8 "
        "and score.py --dtype int8 then use the trained quantization",
    )
    t.add_argument(
        "--qat-observer-epochs",
        type=flags.count(),
        default=4,
        help="--qat: the observers update the activation ranges in the first N epochs, then freeze (torchvision's 4)",
    )
    t.add_argument(
        "--qat-bn-epochs",
        type=flags.integer(min=0),
        default=3,
        help="--qat: the BatchNorm statistics folded into convolutions update in the first N epochs (torchvision's 3)",
    )
    t.add_argument(
        "--quant-engine",
        type=str,
        help="--qat: the int8 engine to train for, one of torch.backends.quantized.supported_engines "
        "(default: onednn where torch has it, else x86)",
    )


def add_data_args(parser):
    """Add MXNet's data flags (the `Data` group)."""
    data = parser.add_argument_group("Data", "the input images")
    data.add_argument(
        "--data-train",
        type=str,
        help="the training data: a .rec file, several comma-separated, or a folder of class subfolders",
    )
    data.add_argument("--data-train-idx", type=str, default="", help="the index of the training data")
    data.add_argument("--data-val", type=str, help="the validation data (.rec or class folders)")
    data.add_argument("--data-val-idx", type=str, default="", help="the index of the validation data")
    data.add_argument("--rgb-mean", type=str, default=AUGMENT.rgb_mean, help="a tuple of size 3 for the mean rgb")
    data.add_argument("--rgb-std", type=str, default=AUGMENT.rgb_std, help="a tuple of size 3 for the std rgb")
    data.add_argument("--pad-size", type=flags.integer(min=0), default=AUGMENT.pad_size, help="padding the input image")
    data.add_argument(
        "--fill-value",
        type=flags.integer(min=0, max=255),
        default=AUGMENT.fill_value,
        help="the value for padding and borders",
    )
    data.add_argument("--image-shape", type=str, help="the image shape fed into the network, e.g. (3,224,224)")
    data.add_argument(
        "--val-resize-size",
        type=flags.integer(min=0),
        default=AUGMENT.val_resize_size,
        help="validation: resize the shorter side to this, at least the crop of --image-shape, before the centre "
        "crop (e.g. 232 for 224, 342 for 299); saved with the model for score.py. 0: crop the image as it is (MXNet)",
    )
    data.add_argument(
        "--max-image-pixels",
        type=flags.integer(min=0),
        default=AUGMENT.max_image_pixels,
        help="skip (and count) an image whose header claims more pixels, before decoding it (0: no limit)",
    )
    data.add_argument("--num-classes", type=flags.count(), help="the number of classes")
    data.add_argument("--num-examples", type=flags.count(), help="the number of training examples")
    data.add_argument(
        "--data-nthreads", type=flags.integer(min=0), default=4, help="number of threads for data decoding"
    )
    data.add_argument(
        "--benchmark", type=flags.switch(), default=0, help="if 1, then feed the network with synthetic data"
    )
    data.add_argument(
        "--data-backend",
        type=str,
        default="auto",
        help="decoder: auto or python (a pool of threads), or dali (NVIDIA DALI, when installed)",
    )
    data.add_argument(
        "--shuffle-seed",
        type=flags.seed(),
        default=None,
        help="seed of the per-epoch global shuffle (default: --seed, else 0)",
    )
    data.add_argument(
        "--ra-reps",
        type=flags.count(),
        default=1,
        metavar="N",
        help="repeated augmentation: each training image N times per epoch, each copy augmented anew, the copies "
        "on different workers where there are enough; an epoch is then N times the batches (the rate schedule "
        "counts them): divide --num-epochs by N for the same compute",
    )
    return data


def _flag(default, help, type=None, group=True):
    """A field of Augmentation with its flag's help (and type, when not the annotation); group=False: a Data flag."""
    return dataclasses.field(default=default, metadata={"help": help, "type": type, "group": group})


AUTO_AUGMENTS = ("none", "ra", "ta_wide", "augmix", "imagenet")  # --auto-augment (common/autoaug.py)
# the flags of today's recipes that scripts without MXNet's augmentation group (train_mnist.py) take too
RECIPE_AUGMENTATIONS = ("auto_augment", "ra_magnitude", "augmix_severity", "random_erase")


@dataclasses.dataclass(frozen=True)
class Augmentation:
    """What the image flags ask of the decoders and the device, built once from them; defaults are the flags'."""

    random_crop: int = _flag(0, "if or not randomly crop the image", flags.switch())
    random_mirror: int = _flag(0, "if or not randomly flip horizontally", flags.switch())
    max_random_h: int = _flag(0, "max change of hue, whose range is [0, 180]", flags.integer(0, 180))
    max_random_s: int = _flag(0, "max change of saturation, in [0, 255]", flags.integer(0, 255))
    max_random_l: int = _flag(0, "max change of intensity, in [0, 255]", flags.integer(0, 255))
    min_random_aspect_ratio: float | None = _flag(
        None, "min value of aspect ratio, None or a positive value", flags.number(above=0)
    )
    max_random_aspect_ratio: float = _flag(
        0, "max value of aspect ratio; with no min, the range is [1-max, 1+max]", flags.number(min=0)
    )
    max_random_rotate_angle: int = _flag(0, "max angle to rotate, in [0, 360]", flags.integer(0, 360))
    max_random_shear_ratio: float = _flag(0, "max ratio to shear, in [0, 1]", flags.fraction())
    max_random_scale: float = _flag(1, "max ratio to scale", flags.number(above=0))
    min_random_scale: float = _flag(1, "min ratio to scale, should >= img_size/input_shape", flags.number(above=0))
    max_random_area: float = _flag(1, "max area to crop in random resized crop", flags.number(above=0, max=1))
    min_random_area: float = _flag(1, "min area to crop in random resized crop", flags.number(above=0, max=1))
    random_resized_crop: int = _flag(0, "whether to use random resized crop", flags.switch())
    brightness: float = _flag(0, "brightness jittering, in [0, 1]", flags.fraction())
    contrast: float = _flag(0, "contrast jittering, in [0, 1]", flags.fraction())
    saturation: float = _flag(0, "saturation jittering, in [0, 1]", flags.fraction())
    pca_noise: float = _flag(0, "pca noise, in [0, 1]", flags.fraction())
    min_crop_size: int = _flag(
        -1, "crop a random square of side in [min, max] crop size, then resize it (-1: off)", flags.integer(min=-1)
    )
    max_crop_size: int = _flag(-1, "see --min-crop-size", flags.integer(min=-1))
    use_imagenet_data_augmentation: int = _flag(
        0, "1: the ImageNet preset (random-resized crop, colour, PCA noise) for every flag not given", flags.switch()
    )
    auto_augment: str = _flag(
        "none",
        "per-image policy after the crop: ra (RandAugment), ta_wide (TrivialAugment-wide), augmix, imagenet "
        "(AutoAugment's ImageNet policy), none",
        flags.choice(*AUTO_AUGMENTS),
    )
    ra_magnitude: int = _flag(9, "--auto-augment ra: the magnitude of its operations, 0-30", flags.integer(0, 30))
    augmix_severity: int = _flag(3, "--auto-augment augmix: the severity of its operations, 1-10", flags.integer(1, 10))
    random_erase: float = _flag(
        0.0, "probability of erasing a random rectangle of each training image to the mean colour", flags.fraction()
    )
    pad_size: int = _flag(0, "padding the input image", group=False)
    fill_value: int = _flag(127, "the value for padding and borders", group=False)
    rgb_mean: str = _flag("123.68,116.779,103.939", "a tuple of size 3 for the mean rgb", group=False)
    rgb_std: str = _flag("1,1,1", "a tuple of size 3 for the std rgb", group=False)
    max_image_pixels: int = _flag(
        MAX_IMAGE_PIXELS, "skip (and count) an image whose header claims more pixels (0: no limit)", group=False
    )
    val_resize_size: int = _flag(
        0, "validation: resize the shorter side to this before the centre crop (0: crop as it is)", group=False
    )

    @classmethod
    def of(cls, flags):
        """The settings of parsed flags (an argparse namespace; flags it lacks keep their defaults), or flags itself."""
        if isinstance(flags, cls):
            return flags
        return cls(**{f.name: getattr(flags, f.name) for f in dataclasses.fields(cls) if hasattr(flags, f.name)})


AUGMENT = Augmentation()  # the defaults, which common.data's flags declare too


def add_data_aug_args(parser, names=None):
    """Add MXNet's augmentation flags (the `Image augmentations` group), one per field of Augmentation (or of those
    named in `names`)."""
    aug = parser.add_argument_group("Image augmentations", "implemented on the workers and the device")
    for f in dataclasses.fields(Augmentation):
        if f.metadata["group"] and (names is None or f.name in names):
            kind = f.metadata["type"] or f.type  # the annotation: int or float
            aug.add_argument("--" + f.name.replace("_", "-"), type=kind, default=f.default, help=f.metadata["help"])
    return aug


def set_data_aug_level(aug, level):
    """Set MXNet's augmentation presets: 1 crop+mirror, 2 adds aspect/scale, 3 adds rotate/shear/colour."""
    if level >= 1:
        aug.set_defaults(random_crop=1, random_mirror=1)
    if level >= 2:
        aug.set_defaults(max_random_h=36, max_random_s=50, max_random_l=50)
    if level >= 3:
        aug.set_defaults(max_random_rotate_angle=10, max_random_shear_ratio=0.1, max_random_aspect_ratio=0.25)


def parse_args(parser, argv=None):
    """parser.parse_args; with --use-imagenet-data-augmentation 1, the ImageNet preset fills every flag not given.

    MXNet 1.9.1's train_imagenet.py set the preset's defaults after parsing, so they never applied; here they do,
    and one line on stderr says so.
    """
    args = parser.parse_args(argv)
    if getattr(args, "use_imagenet_data_augmentation", 0):
        set_imagenet_aug(parser)
        args = parser.parse_args(argv)
        print(
            f"{parser.prog}: --use-imagenet-data-augmentation 1: the ImageNet preset (random-resized crop, mirror, "
            "colour, PCA noise, ImageNet std) applies to every augmentation flag not given (MXNet 1.9.1 meant to "
            "and did not)",
            file=sys.stderr,
        )
    return args


def set_imagenet_aug(aug):
    """Set the standard ImageNet training augmentation (MXNet's set_imagenet_aug)."""
    aug.set_defaults(
        rgb_mean="123.68,116.779,103.939",
        rgb_std="58.393,57.12,57.375",
        random_crop=0,
        random_resized_crop=1,
        random_mirror=1,
        min_random_area=0.08,
        max_random_aspect_ratio=4.0 / 3.0,
        min_random_aspect_ratio=3.0 / 4.0,
        brightness=0.4,
        contrast=0.4,
        saturation=0.4,
        pca_noise=0.1,
    )


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """--help with each default said once: none after a flag without a value, a None default, or a help text that
    already gives it."""

    def _get_help_string(self, action):
        text = action.help or ""
        quiet = action.default in (None, argparse.SUPPRESS) or action.nargs == 0 or "default" in text
        return text if quiet else super()._get_help_string(action)


def defaults(parser):
    """{flag destination: default} of a parser (the start-up line shows only the flags that differ from these)."""
    return {a.dest: parser.get_default(a.dest) for a in parser._actions if a.dest != "help"}


def given_flags(parser, argv):
    """The destinations of the flags given on the command line (not their defaults)."""
    unset = object()
    probe = argparse.Namespace(**{a.dest: unset for a in parser._actions})  # argparse fills in only what is given
    return {k for k, v in vars(parser.parse_args(argv, namespace=probe)).items() if v is not unset}


def add_int8_args(p):
    """The int8 flags of score.py and tools/export.py: calibration data and batches, the quantized engine."""
    p.add_argument("--data-calib", help="int8: calibration data (.rec or folder; default: --data-val)")
    p.add_argument(
        "--calib-batches", type=flags.count(), default=32, help="int8: number of calibration batches (torchvision's 32)"
    )
    p.add_argument(
        "--quant-engine",
        help="int8: torch's quantized engine (torch.backends.quantized.supported_engines; default: onednn where "
        "torch has it, else x86; a --qat model: the one it trained for)",
    )


def complete(args):
    """args with every training, data and augmentation flag it lacks set to its default (a Namespace built by a
    program rather than these parsers keeps working as flags are added); args itself is not changed."""
    parser = argparse.ArgumentParser(add_help=False)
    for add in (add_fit_args, add_data_args, add_data_aug_args):
        add(parser)
    return argparse.Namespace(**{**defaults(parser), **vars(args)})
