"""--auto-augment (ra, ta_wide, augmix, imagenet) and --random-erase: what training sees, on both data paths (decode
threads, in-memory MNIST); the same --seed gives the same batches and a resume the same weights; bad values end in
one line; --test-io prices each stage; the kernels agree with torchvision's."""

import re
import shutil

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from common import autoaug, dali, data
from tests.test_bad_images import jpeg
from tests.test_data import make_args, random_images, write_rec
from tests.test_train_cli import MLP

POLICIES = ["ra", "ta_wide", "augmix", "imagenet"]
RECIPE = ["--auto-augment", "ta_wide", "--random-erase", "0.5"]


# ---------------------------------------------------------------- bad values: one line, exit 2, before torch loads


@pytest.mark.parametrize(
    "script, flag, value, words",
    [
        ("train_imagenet.py", "--auto-augment", "autoaugment", "none, ra, ta_wide, augmix, imagenet"),
        ("train_mnist.py", "--auto-augment", "TA_WIDE", "none, ra, ta_wide, augmix, imagenet"),
        ("train_imagenet.py", "--random-erase", "1.5", "[0, 1]"),
        ("train_mnist.py", "--random-erase", "-0.1", "[0, 1]"),
        ("train_cifar10.py", "--ra-magnitude", "31", "[0, 30]"),
        ("fine-tune.py", "--augmix-severity", "0", "[1, 10]"),
    ],
)
def test_bad_values_end_in_one_line_naming_flag_and_range(script, flag, value, words, cli):
    proc = cli(script, flag, value, check=2)
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith(f"{script}: error: argument {flag}: ") and words in last, proc.stderr
    assert "Traceback" not in proc.stderr


# ---------------------------------------------------------------- the decode-thread path (ImageIter)


@pytest.fixture(scope="module")
def rec(tmp_path_factory):
    """A .rec of 12 smooth 40x48 images in 3 classes."""
    return write_rec(tmp_path_factory.mktemp("rec") / "r", random_images(12), [k % 3 for k in range(12)])


def epoch(rec, *flags, which=0, nthreads="2", epoch_no=0):
    """The uint8 batches of one epoch of the training (which=0) or validation (1) iterator for these flags."""
    args = make_args(
        *("--data-train", rec, "--data-val", rec, "--image-shape", "3,24,24", "--data-nthreads", nthreads),
        *("--random-resized-crop", "1", "--min-random-area", "0.3", "--random-mirror", "1", *flags),
    )
    it = data.get_rec_iter(args)[which]
    it.set_epoch(epoch_no)
    return [x.clone() for x, _ in it]


def same(a, b):
    return len(a) == len(b) and all(torch.equal(x, y) for x, y in zip(a, b))


@pytest.mark.parametrize("flags", [["--auto-augment", p] for p in POLICIES] + [["--random-erase", "1"]])
def test_each_flag_changes_training_batches_and_the_seed_fixes_them(rec, flags):
    plain, aug = epoch(rec), epoch(rec, *flags)
    assert not same(plain, aug)
    assert same(aug, epoch(rec, *flags, nthreads="1"))  # thread timing changes nothing
    assert not same(aug, epoch(rec, *flags, epoch_no=1))  # each epoch draws anew
    assert not same(aug, epoch(rec, *flags, "--seed", "1"))


def test_validation_never_augments(rec):
    assert same(epoch(rec, which=1), epoch(rec, *RECIPE, which=1))


def test_random_erase_fills_with_the_mean_colour(rec):
    (x,) = epoch(rec, "--random-erase", "1", "--rgb-mean", "10,20,30", "--batch-size", "12")
    filled = (x == torch.tensor([10, 20, 30], dtype=torch.uint8)).all(-1)  # (N, H, W): pixels at the mean
    areas = filled.flatten(1).sum(1).float() / (24 * 24)
    assert (areas > 0.01).float().mean() > 0.7  # nearly every image has its rectangle (10 tries may all miss)
    assert (areas < 0.5).all()


def test_dali_declines_a_recipe_and_says_so(rec, caplog):
    args = make_args("--image-shape", "3,24,24", "--random-resized-crop", "1", *RECIPE)
    from common.augment import Geometry

    with caplog.at_level("INFO"):
        assert not dali.supports(Geometry(args, (3, 24, 24), train=True))
    assert "--data-backend dali: --auto-augment / --random-erase decode on the thread backend" in caplog.text
    assert dali.supports(Geometry(make_args("--random-resized-crop", "1"), (3, 24, 24), train=True))


def mnist_epoch(*flags, epoch_no=0):
    """The batches of one epoch of train_mnist.py's training iterator (shifts of up to 2 pixels) on 64 digits."""
    rng = np.random.default_rng(0)
    images = np.zeros((64, 28, 28, 1), np.uint8)
    images[:, 8:20, 10:18] = rng.integers(64, 256, (64, 12, 8, 1), dtype=np.uint8)
    args = make_args("--rgb-mean", "0,0,0", *flags)
    it = data.ShiftedArrayIter(images, np.arange(64) % 10, 16, 2, 0, aug=args, seed=args.seed)
    it.set_epoch(epoch_no)
    return [x.clone() for x, _ in it]


@pytest.mark.parametrize("flags", [["--auto-augment", p] for p in POLICIES] + [["--random-erase", "1"]])
def test_each_flag_changes_mnist_batches_and_the_seed_fixes_them(flags):
    aug = mnist_epoch(*flags)
    assert not same(mnist_epoch(), aug) and same(aug, mnist_epoch(*flags))
    assert not same(aug, mnist_epoch(*flags, epoch_no=1)) and not same(aug, mnist_epoch(*flags, "--seed", "1"))
    assert all(x.shape == (16, 28, 28, 1) and x.dtype == torch.uint8 for x in aug)


# ---------------------------------------------------------------- the kernels against torchvision's


def photo(channels, side=64):
    import cv2
    import skimage.data

    img = cv2.resize(skimage.data.astronaut(), (side, side), interpolation=cv2.INTER_AREA)
    return img if channels == 3 else cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)[:, :, None]


@pytest.mark.parametrize("channels", [3, 1])
def test_kernels_agree_with_torchvision(channels):
    from torchvision.transforms import v2

    img = photo(channels)
    tensor = torch.from_numpy(img).permute(2, 0, 1).contiguous()
    ref = v2.AutoAugment(interpolation=v2.InterpolationMode.BILINEAR)  # its space has every operation, Invert too
    for name, (fn, signed) in {**ref._AUGMENTATION_SPACE, **v2.TrivialAugmentWide._AUGMENTATION_SPACE}.items():
        mags = fn(31, 64, 64)
        for index, sign in [(5, 1), (17, -1), (30, -1)]:
            m = 0.0 if mags is None else float(mags[index]) * (sign if signed else 1)
            want = ref._apply_image_or_video_transform(tensor, name, m, interpolation=ref.interpolation, fill=ref._fill)
            got = autoaug.KERNELS[name](img, m)
            diff = np.abs(want.permute(1, 2, 0).numpy().astype(int) - got.astype(int))
            assert got.shape == img.shape and got.dtype == np.uint8
            # equal within one grey level: torchvision truncates where OpenCV rounds, and warps round their weights
            assert diff.max() <= 1 and diff.mean() < 0.05, (name, m, diff.max(), diff.mean())


def test_policies_draw_as_torchvision_does():
    img = photo(3, 32)
    rng = np.random.default_rng(0)
    for policy, size in [("ra", 14), ("ta_wide", 14), ("augmix", 13), ("imagenet", 25)]:
        recipe = autoaug.Recipe(policy, 9, 3, 0.0, [0, 0, 0], (3, 32, 32))
        assert len(recipe.policies if policy == "imagenet" else recipe.space) == size
        batch = np.stack([img] * 8)
        recipe.auto_augment(batch, rng)
        assert sum(not np.array_equal(b, img) for b in batch) >= 4  # Identity, and p < 1, leave some as they were


# ---------------------------------------------------------------- through the command line


def params(prefix, epoch_no):
    return load_file(f"{prefix}-{epoch_no:04d}.params")


def equal(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_mnist_resumes_exactly_with_the_flags_on(tmp_path, cli):
    run = [*MLP, *RECIPE, "--num-examples", "1024", "--batch-size", "128"]
    full, part = tmp_path / "full" / "m", tmp_path / "part" / "m"
    cli(*run, "--num-epochs", "2", "--model-prefix", full, check=0)
    part.parent.mkdir()
    for suffix in ("-symbol.json", "-0001.params", "-0001.states"):  # the run stopped after epoch 1
        shutil.copy(f"{full}{suffix}", f"{part}{suffix}")
    proc = cli(*run, "--num-epochs", "2", "--model-prefix", part, "--load-epoch", "1", check=0)
    assert "resuming at epoch 1" in proc.stderr
    # epoch 2 redrawn by another process from (seed, epoch, part, batch): what the uninterrupted run saw
    assert equal(params(full, 2), params(part, 2))
    assert not equal(params(full, 1), params(part, 2))


@pytest.fixture
def folder(tmp_path):
    """Class folders a/, b/ of 6 JPEGs each."""
    for c, cls in enumerate("ab"):
        (tmp_path / "img" / cls).mkdir(parents=True)
        for k, img in enumerate(random_images(6, seed=c)):
            (tmp_path / "img" / cls / f"{k}.jpg").write_bytes(jpeg(img))
    return tmp_path / "img"


def test_test_io_prices_each_stage(folder, cli):
    backend = ["--data-backend", "dali"] if dali.available() else []  # DALI hands the recipe to the threads
    proc = cli(
        *("train_imagenet.py", "--data-train", folder, "--image-shape", "3,32,32", "--batch-size", "4", "--gpus", ""),
        *("--random-resized-crop", "1", "--test-io", "1", "--auto-augment", "augmix", "--random-erase", "0.25"),
        *backend,
        check=0,
    )
    shares = {}
    for stage in ("decode+crop/resize", "auto-augment", "random erase", "device transform (cpu)"):
        found = re.search(rf"test-io: stage {re.escape(stage)}: ([\d.]+) ms per batch \((\d+)%\)", proc.stderr)
        assert found, (stage, proc.stderr)
        shares[stage] = int(found.group(2))
    assert 97 <= sum(shares.values()) <= 103  # shares of one whole, each rounded
    assert "12 samples in" in proc.stderr
    if backend:
        assert "--data-backend dali: --auto-augment / --random-erase decode on the thread backend" in proc.stderr
