"""Bad images never end a run: empty, truncated, corrupt, not-an-image and decompression-bomb files are skipped
and counted with their reason (training, --test-io, im2rec) or reported as bad (verify_rec); bad .lst numbers are
refused with their line. All through the command lines."""

import cv2
import numpy as np
import pytest

from common import image, recordio
from tests.test_data import random_images, write_rec

TRAIN = ["train_imagenet.py", "--network", "mlp", "--image-shape", "3,32,32", "--num-classes", "2", "--gpus", ""]
BOMB_SIDE = 14000  # 196 million pixels: over the default limit of 178,956,970


def jpeg(img):
    """JPEG bytes of an RGB image."""
    return image.encode(img, ".jpg", 95)


def jpeg_bomb(side=BOMB_SIDE):
    """A small JPEG whose SOF0 header is patched to claim side x side pixels (decoding it would take gigabytes)."""
    data = bytearray(jpeg(random_images(1)[0]))
    sof = data.find(b"\xff\xc0")
    data[sof + 5 : sof + 9] = side.to_bytes(2, "big") * 2  # height, then width
    return bytes(data)


def png_bomb(side=BOMB_SIDE):
    """A small PNG whose IHDR is patched to claim side x side pixels."""
    data = bytearray(image.encode(random_images(1)[0], ".png", 3))
    data[16:24] = side.to_bytes(4, "big") * 2  # width, then height
    return bytes(data)


def corrupt_jpeg():
    """A JPEG whose entropy-coded data holds stray restart markers (libjpeg: 'Corrupt JPEG data')."""
    data = bytearray(jpeg(random_images(1)[0]))
    sos = data.find(b"\xff\xda")
    data[sos + 30 : sos + 34] = b"\xff\xd0\xff\xd5"
    return bytes(data)


BAD = {
    "empty.jpg": (b"", "empty (0 bytes)"),
    "truncated.jpg": (jpeg(random_images(1)[0])[:700], "Premature end of JPEG file"),
    "text.jpg": (b"hello, this is not an image\n", "not an image"),
    "corrupt.jpg": (corrupt_jpeg(), "Corrupt JPEG data"),
    "bomb.jpg": (jpeg_bomb(), f"{BOMB_SIDE}x{BOMB_SIDE}"),
    "bomb.png": (png_bomb(), f"{BOMB_SIDE}x{BOMB_SIDE}"),
}


@pytest.fixture
def folder(tmp_path):
    """Class folders a/ and b/ with 3 good images each, and every kind of bad image in a/."""
    root = tmp_path / "images"
    for c, cls in enumerate("ab"):
        (root / cls).mkdir(parents=True)
        for k, img in enumerate(random_images(3, seed=c)):
            (root / cls / f"{k}.jpg").write_bytes(jpeg(img))
    for name, (data, _) in BAD.items():
        (root / "a" / name).write_bytes(data)
    return root


def no_leak(stderr):
    """No traceback, no OpenCV assertion, and none of libjpeg's own lines (its words only inside the suite's)."""
    assert "Traceback" not in stderr and "buf.empty()" not in stderr
    for line in stderr.splitlines():
        assert not line.startswith(("Corrupt JPEG data", "Premature end of JPEG", "libpng")), line


@pytest.mark.parametrize("crop", [[], ["--random-resized-crop", "1", "--min-random-area", "0.08"]])
def test_test_io_skips_and_counts_every_bad_image(crop, folder, cli):
    proc = cli(*TRAIN, *crop, "--data-train", folder, "--batch-size", "2", "--test-io", "1", check=0)
    no_leak(proc.stderr)
    assert "6 samples in" in proc.stderr and f"{len(BAD)} undecodable" in proc.stderr


def test_training_names_each_bad_image_with_its_reason(folder, cli):
    proc = cli(*TRAIN, "--data-train", folder, "--batch-size", "2", "--num-epochs", "1", check=0)
    no_leak(proc.stderr)
    line = next(x for x in proc.stderr.splitlines() if "skipped in the training data" in x)
    assert f"{len(BAD)} images that do not decode (first: " in line
    named = [n for n in BAD if f"{folder / 'a' / n}: " in line]
    assert len(named) == 3, line  # the first three examples, each as "path: reason"
    for name in named:
        said = line.split(f"{folder / 'a' / name}: ", 1)[1].split(str(folder))[0]
        assert BAD[name][1] in said, (name, said)


def test_max_image_pixels_flag_sets_the_limit(tmp_path, cli):
    rec = write_rec(tmp_path / "sizes", random_images(2, 40, 48) + random_images(2, 16, 16), [0, 0, 1, 1])
    flags = ("--data-train", rec, "--batch-size", "2", "--test-io", "1")
    proc = cli(*TRAIN, *flags, "--max-image-pixels", "1000", check=0)  # 40x48 = 1920 pixels: over; 16x16: under
    assert "2 samples in" in proc.stderr and "2 undecodable" in proc.stderr
    assert "4 samples in" in cli(*TRAIN, *flags, check=0).stderr


@pytest.mark.parametrize("name", sorted(BAD))
def test_verify_rec_reports_a_bad_image_with_its_reason(name, tmp_path, cli):
    data, reason = BAD[name]
    rec = write_rec(tmp_path / "r", random_images(2), [0, 1], extra=[(recordio.IRHeader(0, 1, 9, 0), data)])
    proc = cli("tools/verify_rec.py", rec, check=2)
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert "record 2 at byte offset" in proc.stderr and "does not decode" in proc.stderr and reason in proc.stderr
    assert "Corrupt JPEG data" not in proc.stderr or name == "corrupt.jpg"


def test_verify_rec_limit_is_a_flag(tmp_path, cli):
    rec = write_rec(tmp_path / "r", random_images(2, 40, 48), [0, 1])
    assert "OK " in cli("tools/verify_rec.py", rec, check=0).stdout
    proc = cli("tools/verify_rec.py", rec, "--max-image-pixels", "1000", check=2)
    assert "48x40 = 1,920 pixels" in proc.stderr and "over --max-image-pixels 1,000" in proc.stderr


def test_im2rec_skips_bad_images_with_their_reasons(folder, tmp_path, cli):
    cli("tools/im2rec.py", "--list", "--recursive", "--no-shuffle", tmp_path / "o", folder, "--exts", ".jpg", ".png")
    proc = cli("tools/im2rec.py", tmp_path / "o", folder, check=0)
    no_leak(proc.stderr)
    assert "wrote 6 records" in proc.stderr and f"skipped {len(BAD)}" in proc.stderr
    failed = dict(line.split("\t") for line in (tmp_path / "o_failed.lst").read_text().splitlines())
    assert set(failed) == {f"a/{n}" for n in BAD}
    for name, (_, reason) in BAD.items():
        assert reason in failed[f"a/{name}"], failed


@pytest.mark.parametrize(
    "line,needle",
    [
        ("0\tnan\ta.jpg", "label nan is not a finite number"),
        ("0\t-inf\ta.jpg", "label -inf is not a finite number"),
        ("0\t1e40\ta.jpg", "label 1e+40 does not fit a float32"),
        (f"{2**64}\t1\ta.jpg", f"index {2**64} does not fit a record id"),
    ],
)
def test_im2rec_refuses_labels_and_indices_a_record_cannot_hold(line, needle, tmp_path, cli):
    root = tmp_path / "root"
    root.mkdir()
    cv2.imwrite(str(root / "a.jpg"), np.zeros((8, 8, 3), np.uint8))
    lst = tmp_path / "l.lst"
    lst.write_text(f"1\t0\ta.jpg\n{line}\n")
    proc = cli("tools/im2rec.py", tmp_path / "l", root, check=2)
    assert "Traceback" not in proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert f"{lst}, line 2: {needle}" in last, proc.stderr
    assert not (tmp_path / "l.rec").exists()
