"""--ra-reps N (repeated augmentation): each image N times per epoch, its copies on different workers and augmented
differently, the same number of batches on every worker, the seed's permutation, exact resume."""

import re

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from common import augment, data
from tests.test_data import make_args, random_images, write_rec


def parts_of(num, bs, parts, reps, seed=3, epoch=1):
    """Each part's batches of one epoch."""
    return [
        data.epoch_batches(num, bs, shuffle=True, seed=seed, epoch=epoch, part_index=k, num_parts=parts, reps=reps)
        for k in range(parts)
    ]


def dealt_order(parts):
    """The global sequence the parts were dealt from: part k holds positions k, k + P, k + 2P, ..."""
    seqs = [np.concatenate(batches) for batches in parts]
    out = []
    for i in range(max(map(len, seqs))):
        out += [int(s[i]) for s in seqs if i < len(s)]
    return out


@pytest.mark.parametrize("workers", [1, 2, 3, 4])
@pytest.mark.parametrize("reps", [1, 2, 3, 4])
@pytest.mark.parametrize("num,bs", [(10, 3), (17, 4), (64, 8)])
def test_every_image_reps_times_in_equal_batch_counts(workers, reps, num, bs):
    parts = parts_of(num, bs, workers, reps)
    assert len({len(b) for b in parts}) == 1, "every worker must run the same number of batches"
    per_worker = -(-num * reps // workers)  # the longest part: the epoch is reps times the dataset
    assert len(parts[0]) == -(-per_worker // bs)
    assert all(0 < len(b) <= bs for batches in parts for b in batches)
    counts = np.bincount(np.concatenate([np.concatenate(b) for b in parts]), minlength=num)
    assert counts.tolist() == [reps] * num
    # each image's copies go to min(reps, workers) different workers, as evenly as dealing allows
    holders = [{k for k, b in enumerate(parts) if i in np.concatenate(b)} for i in range(num)]
    assert all(len(h) == min(reps, workers) for h in holders)


@pytest.mark.parametrize("workers,reps", [(1, 2), (2, 2), (3, 2), (4, 3)])
def test_the_permutation_is_the_seeds_with_or_without_repeats(workers, reps):
    plain = dealt_order(parts_of(50, 4, 1, 1))
    repeated = dealt_order(parts_of(50, 4, workers, reps))
    assert repeated == [i for i in plain for _ in range(reps)]  # the same permutation, each index reps times
    assert plain == np.random.default_rng([3, 1]).permutation(50).tolist()  # the epoch's order from (seed, epoch)
    assert dealt_order(parts_of(50, 4, workers, reps, epoch=2)) != repeated  # a new order every epoch
    assert dealt_order(parts_of(50, 4, workers, reps, seed=4)) != repeated  # and from every seed


def test_copies_are_augmented_differently_within_a_batch_and_across_workers(tmp_path):
    rec = write_rec(tmp_path / "ra", random_images(6, 64, 64), list(range(6)))
    flags = ("--data-train", rec, "--image-shape", "3,32,32", "--random-crop", "1", "--random-mirror", "1")
    flags += ("--ra-reps", "2", "--batch-size", "4", "--data-nthreads", "1")

    def batches(rank, workers):
        kv = type("KV", (), {"rank": rank, "num_workers": workers})
        train, _ = data.get_rec_iter(make_args(*flags), kv)
        train.set_epoch(0)
        return [(x.clone(), y.tolist()) for x, y in train]

    one = batches(0, 1)
    assert sum(len(y) for _, y in one) == 12  # 6 images twice
    pairs = [(x[i], x[i + 1]) for x, y in one for i in range(len(y) - 1) if y[i] == y[i + 1]]
    assert len(pairs) >= 4 and all(not torch.equal(a, b) for a, b in pairs)  # copies side by side in one batch
    w0, w1 = batches(0, 2), batches(1, 2)
    assert [y for _, y in w0] == [y for _, y in w1]  # two workers, two copies: each worker has one of each image
    assert all(not torch.equal(a, b) for (xa, _), (xb, _) in zip(w0, w1) for a, b in zip(xa, xb))


def test_in_memory_images_repeat_and_shift_differently():
    images = np.random.default_rng(0).integers(0, 256, (6, 12, 12, 1), dtype=np.uint8)
    labels = np.arange(6, dtype=np.float32)
    copies = {}
    for k in range(2):
        it = data.ShiftedArrayIter(images, labels, 4, 4, 0, seed=2, part_index=k, num_parts=2, reps=2)
        it.set_epoch(1)
        assert len(it) == 2  # 12 copies over 2 workers in batches of 4
        for x, y in it:
            for img, label in zip(x, y.tolist()):
                copies.setdefault(label, []).append(img)
    assert sorted(copies) == list(range(6)) and all(len(c) == 2 for c in copies.values())
    same = sum(torch.equal(a, b) for a, b in copies.values())
    assert same <= 1  # two of 81 shifts each: the copies' windows differ (all but a chance coincidence)


def test_device_jitter_differs_between_workers_and_repeats_on_resume():
    aug = make_args("--brightness", "0.4", "--max-random-rotate-angle", "20")
    x = torch.full((4, 16, 16, 3), 128, dtype=torch.uint8)
    out = {}
    for part in (0, 1):
        tf = augment.DeviceTransform(aug, (3, 16, 16), True, "cpu", channels_last=False, seed=5, part=part)
        tf.set_epoch(3)
        out[part] = tf(x)
        tf.set_epoch(3)  # a resumed run reseeds the same way
        assert torch.equal(tf(x), out[part])
    assert not torch.equal(out[0], out[1])  # the copies on worker 0 and worker 1 get different jitter


def test_validation_is_not_repeated(tmp_path):
    rec = write_rec(tmp_path / "v", random_images(10, 32, 32), list(range(10)))
    args = make_args("--data-train", rec, "--data-val", rec, "--image-shape", "3,32,32", "--ra-reps", "3")
    train, val = data.get_rec_iter(args)
    assert train.reps == 3 and len(train) == -(-30 // 4) and train.num == 10
    assert val.reps == 1 and sorted(np.concatenate(val.batches()).tolist()) == list(range(10))


@pytest.mark.dali
def test_dali_follows_the_repeated_order(tmp_path):
    pytest.importorskip("nvidia.dali")
    rec = write_rec(tmp_path / "d", random_images(5, 64, 64), list(range(5)))
    flags = ("--data-train", rec, "--image-shape", "3,32,32", "--random-resized-crop", "1", "--min-random-area", "0.3")
    flags += ("--ra-reps", "2")
    thr, _ = data.get_rec_iter(make_args(*flags, "--data-backend", "python"))
    dal, _ = data.get_rec_iter(make_args(*flags, "--data-backend", "dali"))
    a, b = list(thr), list(dal)
    assert len(b) == len(dal) == 3 and [t[1].tolist() for t in a] == [t[1].tolist() for t in b]
    x, y = b[0]
    assert y[0] == y[1] and not torch.equal(x[0], x[1])  # DALI crops the two copies differently


TINY = ["train_imagenet.py", "--network", "mlp", "--image-shape", "3,16,16", "--num-classes", "3", "--gpus", ""]
TINY += [
    "--batch-size",
    "4",
    "--lr",
    "0.01",
    "--rgb-std",
    "58,57,57",
    "--random-crop",
    "1",
    "--random-mirror",
    "1",
    "--brightness",
    "0.2",
]


@pytest.fixture(scope="module")
def tiny_rec(tmp_path_factory):
    """12 images of 3 classes, 24x24."""
    return write_rec(tmp_path_factory.mktemp("tiny") / "t", random_images(12, 24, 24), [i % 3 for i in range(12)])


def test_epoch_is_reps_times_longer_and_resume_is_exact(tiny_rec, tmp_path, cli):
    flags = (*TINY, "--data-train", tiny_rec, "--ra-reps", "2", "--seed", "7", "--lr-step-epochs", "1")
    flags += ("--disp-batches", "1")
    full = cli(*flags, "--num-epochs", "2", "--model-prefix", tmp_path / "full", check=0).stderr
    # 12 images in batches of 4 are 3 batches an epoch, 6 with two copies; the rate drops after the epoch's last
    # update, numbered as MXNet numbers it (Update[4] without repeats)
    assert re.findall(r"Epoch\[0\] Batch \[\d+-(\d+)\]", full)[-1] == "5"
    assert "Update[7]: Change learning rate" in full
    cli(*flags, "--num-epochs", "1", "--model-prefix", tmp_path / "part", check=0)
    proc = cli(*flags, "--num-epochs", "2", "--model-prefix", tmp_path / "part", "--load-epoch", "1", check=0)
    assert "resuming at epoch 1" in proc.stderr
    a, b = load_file(f"{tmp_path}/full-0002.params"), load_file(f"{tmp_path}/part-0002.params")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    c = load_file(f"{tmp_path}/full-0001.params")
    assert any(not torch.equal(a[k], c[k]) for k in a)  # epoch 2 trained: the comparison is not of untouched weights


@pytest.mark.parametrize("value", ["0", "-2", "1.5", "two"])
def test_bad_values_are_one_line_exit_2(value, cli):
    proc = cli("train_mnist.py", "--ra-reps", value)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "--ra-reps" in proc.stderr.strip().splitlines()[-1]
