"""The data layer: epoch order, sources, both decoder backends, device transform, and MXNet's numbers."""

import argparse

import cv2
import numpy as np
import pytest
import torch

from common import augment, data, options, recordio
from common.util import UserError


def make_args(*argv):
    """Parse the data flags as an entry script would."""
    p = argparse.ArgumentParser()
    options.add_data_args(p)
    options.add_data_aug_args(p)
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--disp-batches", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args(list(argv))


def write_rec(path, images, labels, extra=()):
    """Pack (H, W, 3) RGB images with labels into path.rec/.idx; `extra` are raw (header, payload) records."""
    w = recordio.MXIndexedRecordIO(str(path) + ".idx", str(path) + ".rec", "w")
    key = 0
    for img, lab in zip(images, labels):
        w.write_idx(key, recordio.pack_img(recordio.IRHeader(0, lab, key, 0), img[:, :, ::-1], quality=95))
        key += 1
    for header, payload in extra:
        w.write_idx(key, recordio.pack(header, payload))
        key += 1
    w.close()
    return str(path) + ".rec"


def random_images(n, h=40, w=48, seed=0):
    """n random but smooth RGB images (they survive JPEG well)."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (n, h // 8, w // 8, 3), dtype=np.uint8)
    return [cv2.resize(s, (w, h), interpolation=cv2.INTER_LINEAR) for s in small]


@pytest.mark.parametrize("num,bs,parts", [(10, 3, 1), (10, 3, 4), (17, 4, 3), (5, 1, 2), (1000, 32, 3)])
def test_epoch_batches_cover_every_record_once(num, bs, parts):
    seen, counts = [], set()
    for k in range(parts):
        batches = data.epoch_batches(num, bs, shuffle=True, seed=3, epoch=1, part_index=k, num_parts=parts)
        counts.add(len(batches))
        assert all(len(b) > 0 for b in batches)
        assert all(len(b) <= bs for b in batches)
        seen.extend(np.concatenate(batches).tolist())
    assert len(counts) == 1, "every part must run the same number of batches"
    if not (bs == 1 and num % parts):  # the only case where one record is repeated to keep parts in step
        assert sorted(seen) == list(range(num))


def test_epoch_order_reshuffles_every_epoch_and_is_reproducible():
    e0 = np.concatenate(data.epoch_batches(100, 10, shuffle=True, seed=1, epoch=0))
    e1 = np.concatenate(data.epoch_batches(100, 10, shuffle=True, seed=1, epoch=1))
    again = np.concatenate(data.epoch_batches(100, 10, shuffle=True, seed=1, epoch=1))
    assert not np.array_equal(e0, e1)
    assert np.array_equal(e1, again)
    assert sorted(e0) == sorted(e1) == list(range(100))
    val = np.concatenate(data.epoch_batches(100, 10, shuffle=False, seed=1, epoch=5))
    assert np.array_equal(val, np.arange(100))


def test_validation_pipeline_matches_mxnet_imagerecorditer(fixtures):
    """Centre crop 24 of tiny.rec, normalised: MXNet's ImageRecordIter numbers (JPEG decoder rounding aside)."""
    gold = np.load(fixtures / "imagerecorditer_center24.npz")
    args = make_args(
        "--data-train",
        str(fixtures / "im2rec" / "tiny.rec"),
        "--data-val",
        str(fixtures / "im2rec" / "tiny.rec"),
        "--image-shape",
        "3,24,24",
        "--batch-size",
        "9",
        "--rgb-std",
        "58.393,57.12,57.375",
        "--data-backend",
        "python",
    )
    _, val = data.get_rec_iter(args)
    ((x, y),) = list(val)
    tf = augment.DeviceTransform(args, (3, 24, 24), train=False, device="cpu")
    ours = tf(x).numpy()
    assert ours.shape == gold["data"].shape
    np.testing.assert_array_equal(y.numpy(), gold["label"].reshape(-1))
    # one grey level of decoder difference is 1/57 after normalisation
    assert np.abs(ours - gold["data"]).mean() < 0.02
    assert np.abs(ours - gold["data"]).max() < 0.2


def test_multi_label_and_header_records(tmp_path, fixtures):
    args = make_args(
        "--data-train",
        str(fixtures / "im2rec" / "tiny_multi.rec"),
        "--image-shape",
        "3,24,24",
        "--batch-size",
        "9",
        "--data-backend",
        "python",
    )
    train, _ = data.get_rec_iter(args)
    ((x, y),) = list(train)
    assert y.shape == (9, 2)
    assert sorted(y[:, 1].tolist()) == [k * 0.5 for k in range(9)]
    # an insightface-style header record (no image) is skipped and counted
    imgs = random_images(5)
    rec = write_rec(tmp_path / "hdr", imgs, [0, 1, 2, 3, 4], extra=[(recordio.IRHeader(2, [5.0, 6.0], 0, 0), b"")])
    train, _ = data.get_rec_iter(make_args("--data-train", rec, "--image-shape", "3,32,32", "--data-backend", "python"))
    assert train.skipped_no_image == 1
    assert sum(len(b[0]) for b in train) == 5


def test_labels_of_several_recs_are_padded_to_the_widest_sample(tmp_path):
    single = write_rec(tmp_path / "one", random_images(2), [3, 4])
    multi = write_rec(
        tmp_path / "multi",
        random_images(2, seed=1),
        [[1, 2, 3], [4.5, 5, 6]],
        extra=[(recordio.IRHeader(0, [7, 8, 9, 10], 0, 0), b"")],  # wider, but a header record: dropped
    )
    source = data.open_source(f"{single},{multi}")
    assert len(source) == 4 and source.skipped_no_image == 1
    assert source.labels.tolist() == [[3, 0, 0], [4, 0, 0], [1, 2, 3], [4.5, 5, 6]]
    assert source.where(2).startswith(multi) and len(source.read(3)) > 0
    assert data.open_source(single).labels.tolist() == [3, 4]  # one label each: a flat array


def test_bad_image_is_skipped_and_counted(tmp_path):
    rec = write_rec(
        tmp_path / "bad",
        random_images(6),
        [0, 1, 0, 1, 0, 1],
        extra=[(recordio.IRHeader(0, 1, 9, 0), b"\xff\xd8 not a jpeg at all")],
    )
    args = make_args(
        "--data-train",
        rec,
        "--image-shape",
        "3,32,32",
        "--random-crop",
        "1",
        "--data-backend",
        "python",
        "--batch-size",
        "7",
    )
    train, _ = data.get_rec_iter(args)
    batches = list(train)
    assert sum(len(b[0]) for b in batches) == 6
    assert train.bad_images == 1 and "bad.rec at byte" in train.bad_examples[0]


def test_label_outside_num_classes_names_the_record(tmp_path):
    rec = write_rec(tmp_path / "lab", random_images(3), [0, 7, 1])
    with pytest.raises(UserError, match=r"label 7 of .*lab.rec at byte \d+ is outside \[0, 5\)"):
        data.get_rec_iter(make_args("--data-train", rec, "--image-shape", "3,32,32", "--num-classes", "5"))


def test_multi_label_first_label_outside_num_classes_names_the_record(tmp_path):
    rec = write_rec(tmp_path / "ml", random_images(3), [[3, 7], [25, 1], [4, 0]])
    with pytest.raises(UserError, match=r"label 25 of .*ml.rec at byte \d+ is outside \[0, 10\)"):
        data.get_rec_iter(make_args("--data-train", rec, "--image-shape", "3,32,32", "--num-classes", "10"))


@pytest.mark.parametrize(
    "flags",
    [
        ("--min-random-scale", "1.2", "--max-random-scale", "1"),  # reversed: MXNet draws between the two
        ("--min-random-aspect-ratio", "0.75", "--max-random-aspect-ratio", "0.25"),
        ("--random-resized-crop", "1", "--min-random-aspect-ratio", "1.3", "--max-random-aspect-ratio", "0.75"),
    ],
)
def test_reversed_scale_and_ratio_ranges_still_augment(tmp_path, flags):
    rec = write_rec(tmp_path / "r", random_images(6), [0, 1, 0, 1, 0, 1])
    args = make_args("--data-train", rec, "--image-shape", "3,32,32", "--data-backend", "python", *flags)
    train, _ = data.get_rec_iter(args)
    assert sum(len(x) for x, _ in train) == 6 and train.bad_images == 0


@pytest.mark.parametrize(
    "flags,message",
    [
        (("--min-random-area", "0.5", "--max-random-area", "0.3"), "--min-random-area 0.5 / --max-random-area 0.3"),
        (("--min-random-aspect-ratio", "0.75", "--max-random-aspect-ratio", "0"), "ratios must be > 0"),
        (("--max-random-aspect-ratio", "1.5"), "deviation from 1 and must be < 1"),
    ],
)
def test_impossible_augmentation_ranges_are_user_errors(tmp_path, flags, message):
    rec = write_rec(tmp_path / "r", random_images(2), [0, 1])
    args = make_args("--data-train", rec, "--image-shape", "3,32,32", "--random-resized-crop", "1", *flags)
    with pytest.raises(UserError, match=message):
        data.get_rec_iter(args)


@pytest.mark.parametrize(
    "flags,message",
    [
        (("--rgb-mean", "1,2"), "--rgb-mean '1,2' must be 3 comma-separated numbers"),
        (("--rgb-std", "1,x,1"), "--rgb-std '1,x,1' must be 3 comma-separated numbers"),
        (("--rgb-std", "1,0,1"), "a standard deviation of 0"),
    ],
)
def test_bad_mean_and_std_are_one_line_errors(cli, flags, message):
    proc = cli("train_cifar10.py", "--benchmark", "1", "--num-epochs", "1", "--num-examples", "64", *flags, check=2)
    assert message in proc.stderr and "Traceback" not in proc.stderr


def test_idx_of_another_rec_is_refused(tmp_path):
    a = write_rec(tmp_path / "a", random_images(4, seed=1), [0, 1, 2, 3])
    write_rec(tmp_path / "b", random_images(9, 60, 80, seed=2), list(range(9)))
    with pytest.raises(UserError, match="idx"):
        data.get_rec_iter(
            make_args("--data-train", a, "--data-train-idx", str(tmp_path / "b.idx"), "--image-shape", "3,32,32")
        )


def test_folder_source_and_augmentation(tmp_path):
    for c, name in enumerate(["ant", "bee"]):
        (tmp_path / name).mkdir()
        for k, img in enumerate(random_images(3, seed=c)):
            cv2.imwrite(str(tmp_path / name / f"{k}.JPEG"), img)
    args = make_args(
        "--data-train",
        str(tmp_path),
        "--image-shape",
        "3,24,24",
        "--random-resized-crop",
        "1",
        "--min-random-area",
        "0.3",
        "--random-mirror",
        "1",
        "--batch-size",
        "6",
        "--data-backend",
        "python",
    )
    train, _ = data.get_rec_iter(args)
    ((x, y),) = list(train)
    assert x.shape == (6, 24, 24, 3) and x.dtype == torch.uint8
    assert sorted(y.tolist()) == [0, 0, 0, 1, 1, 1]


def test_augmentation_is_reseeded_per_epoch(tmp_path):
    rec = write_rec(tmp_path / "aug", random_images(8), list(range(8)))
    args = make_args(
        "--data-train",
        rec,
        "--image-shape",
        "3,24,24",
        "--random-resized-crop",
        "1",
        "--min-random-area",
        "0.2",
        "--batch-size",
        "8",
        "--data-backend",
        "python",
    )
    train, _ = data.get_rec_iter(args)
    first = [b[0].clone() for b in train]
    again = [b[0].clone() for b in train]
    train.set_epoch(1)
    other = [b[0].clone() for b in train]
    assert torch.equal(first[0], again[0])
    assert not torch.equal(first[0], other[0])


def test_synthetic_batches():
    args = make_args(
        "--benchmark",
        "1",
        "--image-shape",
        "3,32,32",
        "--num-classes",
        "10",
        "--batch-size",
        "5",
        "--num-examples",
        "20",
    )
    train, val = data.get_rec_iter(args)
    assert val is None and len(train) == 4
    x, y = next(iter(train))
    assert x.shape == (5, 32, 32, 3) and x.dtype == torch.uint8 and y.max() < 10


def test_device_transform_normalises_and_jitters():
    args = make_args(
        "--rgb-mean",
        "10,20,30",
        "--rgb-std",
        "2,4,5",
        "--brightness",
        "0.4",
        "--contrast",
        "0.4",
        "--saturation",
        "0.4",
        "--pca-noise",
        "0.1",
        "--max-random-h",
        "20",
        "--max-random-rotate-angle",
        "10",
        "--max-random-shear-ratio",
        "0.1",
    )
    x = torch.full((2, 8, 8, 3), 50, dtype=torch.uint8)
    plain = augment.DeviceTransform(args, (3, 8, 8), train=False, device="cpu")(x)
    assert plain.shape == (2, 3, 8, 8) and plain.is_contiguous(memory_format=torch.channels_last)
    np.testing.assert_allclose(plain[0, :, 0, 0].numpy(), [(50 - 10) / 2, (50 - 20) / 4, (50 - 30) / 5])
    jit = augment.DeviceTransform(args, (3, 8, 8), train=True, device="cpu")
    out = jit(x)
    assert out.shape == plain.shape and torch.isfinite(out).all()
    assert not torch.allclose(out, plain)
    jit.set_epoch(0)
    first = jit(x)
    jit.set_epoch(0)
    assert torch.equal(first, jit(x))


def test_bad_shape_and_backend_are_user_errors():
    with pytest.raises(UserError, match="image-shape"):
        data.parse_shape("224,224")
    with pytest.raises(UserError, match="valid values: auto, dali, python"):
        data.choose_backend("turbo")


def test_test_io_prints_mxnet_speed_lines(tmp_path):
    rec = write_rec(tmp_path / "io", random_images(12), list(range(12)))
    args = make_args("--data-train", rec, "--image-shape", "3,24,24", "--batch-size", "2", "--data-backend", "python")
    train, _ = data.get_rec_iter(args)
    lines = []
    speed = data.test_io(args, train, log=lines.append)
    assert speed > 0
    batch_lines = [ln for ln in lines if ln.startswith("Batch [")]
    assert len(batch_lines) == 3
    assert all(__import__("re").fullmatch(r"Batch \[\d+\]\tSpeed: \d+\.\d\d samples/sec", ln) for ln in batch_lines)


@pytest.mark.dali
def test_dali_backend_same_order_and_shapes_as_threads(tmp_path):
    pytest.importorskip("nvidia.dali")
    rec = write_rec(tmp_path / "d", random_images(10, 64, 80), list(range(10)))
    common = (
        "--data-train",
        rec,
        "--image-shape",
        "3,32,32",
        "--random-resized-crop",
        "1",
        "--min-random-area",
        "0.3",
        "--random-mirror",
        "1",
        "--batch-size",
        "4",
        "--data-nthreads",
        "2",
    )
    thr, _ = data.get_rec_iter(make_args(*common, "--data-backend", "python"))
    dal, _ = data.get_rec_iter(make_args(*common, "--data-backend", "dali"))
    assert type(dal).__name__ == "DaliIter"
    for epoch in (0, 1):
        thr.set_epoch(epoch)
        dal.set_epoch(epoch)
        a, b = list(thr), list(dal)
        assert len(a) == len(b) == len(dal) == 3
        assert [t[1].tolist() for t in a] == [t[1].tolist() for t in b]
        assert all(t[0].shape == (len(t[1]), 32, 32, 3) and t[0].dtype == torch.uint8 for t in b)


@pytest.mark.dali
def test_dali_backend_survives_a_bad_image(tmp_path):
    pytest.importorskip("nvidia.dali")
    rec = write_rec(
        tmp_path / "db",
        random_images(7, 64, 80),
        list(range(7)),
        extra=[(recordio.IRHeader(0, 7, 9, 0), b"\xff\xd8\xff\xe0 broken")],
    )
    args = make_args(
        "--data-train",
        rec,
        "--image-shape",
        "3,32,32",
        "--random-resized-crop",
        "1",
        "--batch-size",
        "4",
        "--data-backend",
        "dali",
        "--num-classes",
        "8",
    )
    train, _ = data.get_rec_iter(args)
    batches = list(train)
    assert sum(len(b[1]) for b in batches) == 7
    assert train.bad_images == 1


def test_large_window_decodes_at_reduced_scale_with_the_same_picture():
    """A window 4x the output decodes at 1/4 DCT scale: the result must match a full decode + resize."""
    big = cv2.resize(random_images(1, 96, 128)[0], (1024, 768), interpolation=cv2.INTER_CUBIC)
    buf = cv2.imencode(".jpg", big[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, 95])[1].tobytes()
    args = make_args(
        "--random-resized-crop",
        "1",
        "--min-random-area",
        "1",
        "--max-random-aspect-ratio",
        "1.333",
        "--min-random-aspect-ratio",
        "1.333",
    )
    geo = augment.Geometry(args, (3, 96, 128), train=True)
    out = np.empty((96, 128, 3), np.uint8)
    assert geo.load(buf, np.random.default_rng(0), out)
    full = cv2.resize(
        cv2.imdecode(np.frombuffer(buf, np.uint8), cv2.IMREAD_COLOR)[:, :, ::-1],
        (128, 96),
        interpolation=cv2.INTER_AREA,
    )
    assert np.abs(out.astype(int) - full).mean() < 3
    assert not geo.load(b"\xff\xd8\xff\xe0 truncated", np.random.default_rng(0), out)


def test_validation_parts_never_repeat_a_record():
    seen = []
    for k in range(2):
        seen += np.concatenate(
            data.epoch_batches(5, 1, shuffle=False, seed=0, epoch=0, part_index=k, num_parts=2)
        ).tolist()
    assert sorted(seen) == [0, 1, 2, 3, 4]
