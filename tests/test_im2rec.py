"""tools/im2rec.py: list and pack modes against MXNet 1.9.1's golden files and the live peer, bad inputs, safety."""

import io
import json
import multiprocessing
import os
import shutil
import subprocess
import textwrap

import cv2
import numpy as np
import pytest
from PIL import Image

from common import image
from common.recordio import MXIndexedRecordIO, unpack, unpack_img

IM2REC = "tools/im2rec.py"
TINY_FLAGS = ["--resize", "32", "--quality", "90", "--num-thread", "1"]


def read_rec(prefix):
    """[(header, BGR image)] of PREFIX.rec in .idx order."""
    rec = MXIndexedRecordIO(f"{prefix}.idx", f"{prefix}.rec", "r")
    out = [unpack_img(rec.read_idx(k)) for k in rec.keys]
    rec.close()
    return out


def photo(h, w, seed=0):
    """A smooth RGB test picture (gradients plus a few blobs), HxWx3 uint8."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    planes = [np.sin(x / (7 + 5 * c) + rng.random() * 6) * np.cos(y / (9 + 3 * c)) for c in range(3)]
    return (127.5 + 127 * np.stack(planes, axis=2)).astype(np.uint8)


@pytest.fixture
def odd_images(tmp_path):
    """A folder of awkward inputs: CMYK JPEG, gray, 16-bit, RGBA PNG, upper-case .JPEG, an undecodable .jpg."""
    root = tmp_path / "odd"
    root.mkdir()
    rgb = photo(40, 60)
    Image.fromarray(rgb).convert("CMYK").save(root / "cmyk.jpg", quality=95)
    cv2.imwrite(str(root / "gray.png"), rgb[:, :, 0])
    cv2.imwrite(str(root / "deep16.png"), rgb[:, :, ::-1].astype(np.uint16) * 257)
    cv2.imwrite(str(root / "alpha.png"), np.dstack([rgb[:, :, ::-1], np.full((40, 60), 128, np.uint8)]))
    cv2.imwrite(str(root / "UPPER.JPEG"), rgb[:, :, ::-1])
    (root / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0" + bytes(range(256)) * 4)
    (root / "notes.txt").write_text("not an image")
    return root


def test_list_matches_mxnet_golden(cli, fixtures, tmp_path):
    proc = cli(IM2REC, "--list", "--recursive", "--no-shuffle", tmp_path / "tiny", fixtures / "im2rec_src", check=0)
    assert (tmp_path / "tiny.lst").read_text() == (fixtures / "im2rec" / "tiny.lst").read_text()
    assert proc.stdout.split() == ["cat", "0", "dog", "1", "emu", "2"]


@pytest.mark.mxnet
def test_list_splits_match_live_mxnet(cli, fixtures, mxnet_python, tmp_path):
    flags = ["--list", "--recursive", "--chunks", "2", "--train-ratio", "0.5", "--test-ratio", "0.25"]
    peer_script = mxnet_python.parent.parent / "lib/python3.11/site-packages/mxnet/tools/im2rec.py"
    if not peer_script.exists():
        pytest.skip(f"MXNet's im2rec.py not found at {peer_script}")
    (tmp_path / "ours").mkdir()
    (tmp_path / "peer").mkdir()
    cli(IM2REC, *flags, tmp_path / "ours" / "t", fixtures / "im2rec_src", check=0)
    subprocess.run([mxnet_python, peer_script, *flags, tmp_path / "peer" / "t", fixtures / "im2rec_src"], check=True)
    names = sorted(os.listdir(tmp_path / "peer"))
    ours = sorted(os.listdir(tmp_path / "ours"))
    assert names == [n for n in ours if not n.endswith(".classes")]  # the class names: ours only, beside each list
    assert [n for n in ours if n.endswith(".classes")] == [n.replace(".lst", ".classes") for n in names]
    assert "t_1_test.lst" in names
    for name in names:
        assert (tmp_path / "ours" / name).read_text() == (tmp_path / "peer" / name).read_text(), name


def test_list_shuffles_by_default_and_takes_exts_in_any_case(cli, fixtures, odd_images, tmp_path):
    cli(IM2REC, "--list", "--recursive", tmp_path / "s", fixtures / "im2rec_src", check=0)
    shuffled = (tmp_path / "s.lst").read_text().splitlines()
    golden = (fixtures / "im2rec" / "tiny.lst").read_text().splitlines()
    assert sorted(shuffled) == sorted(golden) and shuffled != golden
    cli(IM2REC, "--list", tmp_path / "o", odd_images, "--exts", ".JPG", "jpeg", check=0)
    paths = [line.split("\t")[2] for line in (tmp_path / "o.lst").read_text().splitlines()]
    assert sorted(paths) == ["UPPER.JPEG", "broken.jpg", "cmyk.jpg"]


def test_pack_matches_mxnet_golden(cli, fixtures, tmp_path):
    shutil.copy(fixtures / "im2rec" / "tiny.lst", tmp_path / "tiny.lst")
    proc = cli(IM2REC, *TINY_FLAGS, tmp_path / "tiny", fixtures / "im2rec_src", check=0)
    assert "wrote 9 records" in proc.stderr and "skipped 0" in proc.stderr
    ours, golden = read_rec(tmp_path / "tiny"), read_rec(fixtures / "im2rec" / "tiny")
    assert len(ours) == len(golden) == 9
    for (h, img), (gh, gimg) in zip(ours, golden):
        assert (h.flag, h.label, h.id, h.id2) == (gh.flag, gh.label, gh.id, gh.id2)
        assert img.shape == gimg.shape and min(img.shape[:2]) == 32
        diff = np.abs(img.astype(int) - gimg.astype(int))
        assert diff.mean() < 1.0 and diff.max() <= 16  # same decoder, resize and encoder: at most rounding apart
    assert not (tmp_path / "tiny_failed.lst").exists()


def test_threads_give_the_same_file(cli, fixtures, tmp_path):
    for sub, threads in (("one", "1"), ("two", "2")):
        (tmp_path / sub).mkdir()
        shutil.copy(fixtures / "im2rec" / "tiny.lst", tmp_path / sub / "tiny.lst")
        cli(
            IM2REC, "--resize", "20", "--num-thread", threads, tmp_path / sub / "tiny", fixtures / "im2rec_src", check=0
        )
    assert (tmp_path / "one" / "tiny.rec").read_bytes() == (tmp_path / "two" / "tiny.rec").read_bytes()
    assert (tmp_path / "one" / "tiny.idx").read_text() == (tmp_path / "two" / "tiny.idx").read_text()


def test_pack_label_matches_mxnet_golden(cli, fixtures, tmp_path):
    shutil.copy(fixtures / "im2rec" / "tiny_multi.lst", tmp_path / "multi.lst")
    cli(IM2REC, *TINY_FLAGS, "--pack-label", tmp_path / "multi", fixtures / "im2rec_src", check=0)
    ours, golden = read_rec(tmp_path / "multi"), read_rec(fixtures / "im2rec" / "tiny_multi")
    for (h, img), (gh, gimg) in zip(ours, golden, strict=True):
        assert h.flag == gh.flag == 2 and h.id == gh.id
        np.testing.assert_array_equal(h.label, gh.label)
        assert img.shape == gimg.shape


def test_pass_through_keeps_source_bytes(cli, fixtures, tmp_path):
    shutil.copy(fixtures / "im2rec" / "tiny.lst", tmp_path / "tiny.lst")
    cli(IM2REC, "--pass-through", "--resize", "8", tmp_path / "tiny", fixtures / "im2rec_src", check=0)
    rec = MXIndexedRecordIO(tmp_path / "tiny.idx", tmp_path / "tiny.rec", "r")
    for line in (tmp_path / "tiny.lst").read_text().splitlines():
        index, label, rel = line.split("\t")
        header, payload = unpack(rec.read_idx(int(index)))
        assert payload == (fixtures / "im2rec_src" / rel).read_bytes()
        assert header.label == float(label)
    rec.close()


PEER_READ = textwrap.dedent(
    """
    import json, sys
    import mxnet as mx
    prefix = sys.argv[1]
    rec = mx.recordio.MXIndexedRecordIO(prefix + ".idx", prefix + ".rec", "r")
    rows = []
    for k in rec.keys:
        h, img = mx.recordio.unpack_img(rec.read_idx(k))
        rows.append([h.id, float(h.label), list(img.shape), float(img.mean())])
    it = mx.io.ImageRecordIter(path_imgrec=prefix + ".rec", data_shape=(3, 24, 24), batch_size=9, shuffle=False,
                               rand_crop=False, rand_mirror=False, mean_r=123.68, mean_g=116.779, mean_b=103.939,
                               std_r=58.393, std_g=57.12, std_b=57.375)
    batch = it.next()
    json.dump({"rows": rows, "data": batch.data[0].asnumpy().tolist(), "label": batch.label[0].asnumpy().tolist()},
              sys.stdout)
    """
)


@pytest.mark.mxnet
def test_live_mxnet_reads_our_rec(cli, fixtures, mxnet_python, tmp_path):
    shutil.copy(fixtures / "im2rec" / "tiny.lst", tmp_path / "tiny.lst")
    cli(IM2REC, *TINY_FLAGS, "--num-thread", "2", tmp_path / "tiny", fixtures / "im2rec_src", check=0)
    proc = subprocess.run(
        [mxnet_python, "-c", PEER_READ, tmp_path / "tiny"], capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout)
    ours = read_rec(tmp_path / "tiny")
    assert [r[:3] for r in got["rows"]] == [[h.id, h.label, list(img.shape)] for h, img in ours]
    golden = np.load(fixtures / "imagerecorditer_center24.npz")
    np.testing.assert_array_equal(np.array(got["label"], np.float32), golden["label"])
    np.testing.assert_allclose(np.array(got["data"], np.float32), golden["data"], atol=0.1)


def test_odd_images_come_out_as_8bit_colour_and_failures_are_listed(cli, odd_images, tmp_path):
    cli(IM2REC, "--list", tmp_path / "o", odd_images, check=0)
    proc = cli(IM2REC, "--num-thread", "2", tmp_path / "o", odd_images, check=0)
    assert "wrote 5 records" in proc.stderr and "skipped 1" in proc.stderr
    failed = (tmp_path / "o_failed.lst").read_text().splitlines()
    assert len(failed) == 1 and failed[0].startswith("broken.jpg\t") and "decod" in failed[0]
    names = {int(i): rel for i, _, rel in (line.split("\t") for line in (tmp_path / "o.lst").read_text().splitlines())}
    records = {names[h.id]: img for h, img in read_rec(tmp_path / "o")}
    assert sorted(records) == ["UPPER.JPEG", "alpha.png", "cmyk.jpg", "deep16.png", "gray.png"]
    reference = photo(40, 60)[:, :, ::-1].astype(int)
    for name, img in records.items():
        assert img.dtype == np.uint8 and img.shape == (40, 60, 3), name
        if name == "gray.png":
            assert np.abs(img.astype(int) - reference[:, :, 2:]).mean() < 3
        else:  # colours kept within JPEG (and CMYK round-trip) tolerance
            assert np.abs(img.astype(int) - reference).mean() < 6, name
    cli(IM2REC, "--color", "0", "--encoding", ".png", tmp_path / "o", odd_images, check=0)
    rec = MXIndexedRecordIO(tmp_path / "o.idx", tmp_path / "o.rec", "r")
    for k in rec.keys:
        _, img = unpack_img(rec.read_idx(k), -1)
        assert img.shape == (40, 60)
    rec.close()


def test_strict_stops_and_writes_nothing(cli, odd_images, tmp_path):
    cli(IM2REC, "--list", tmp_path / "o", odd_images, check=0)
    proc = cli(IM2REC, "--strict", tmp_path / "o", odd_images, check=2)
    assert "broken.jpg" in proc.stderr and "Traceback" not in proc.stderr
    assert sorted(os.listdir(tmp_path)) == ["o.lst", "odd"]


@pytest.mark.parametrize(
    "line, what",
    [
        ("5\tcat/cat0.jpg", "2 tab-separated columns"),
        ("x\t1.0\tcat/cat0.jpg", "integer"),
        ("1\tcat\tdog.jpg", "integer"),
    ],
)
def test_malformed_list_line_is_reported_with_its_number(cli, fixtures, tmp_path, line, what):
    (tmp_path / "bad.lst").write_text(f"0\t0.0\tcat/cat0.jpg\n\n{line}\n")
    proc = cli(IM2REC, tmp_path / "bad", fixtures / "im2rec_src", check=2)
    assert "bad.lst, line 3: " in proc.stderr and what in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "bad.rec").exists()


def test_missing_list_and_bad_flags_are_user_errors(cli, fixtures, tmp_path):
    proc = cli(IM2REC, tmp_path / "none", fixtures / "im2rec_src", check=2)
    assert "--list" in proc.stderr and "Traceback" not in proc.stderr
    proc = cli(IM2REC, "--quality", "0", tmp_path / "none", fixtures / "im2rec_src", check=2)
    assert "--quality 0" in proc.stderr
    proc = cli(IM2REC, "--list", "--recursive", tmp_path / "nodir" / "x", fixtures / "im2rec_src", check=2)
    assert f"cannot write {tmp_path / 'nodir' / 'x.lst'}" in proc.stderr and "Traceback" not in proc.stderr


def test_crop_and_resize_beyond_the_image(cli, tmp_path):
    root = tmp_path / "small"
    root.mkdir()
    cv2.imwrite(str(root / "a_small.jpg"), photo(6, 9))
    cv2.imwrite(str(root / "b_line.png"), photo(1, 50))
    cli(IM2REC, "--list", "--no-shuffle", tmp_path / "s", root, check=0)
    cli(IM2REC, "--center-crop", "--resize", "64", tmp_path / "s", root, check=0)
    assert [img.shape for _, img in read_rec(tmp_path / "s")] == [(64, 64, 3), (64, 64, 3)]
    cli(IM2REC, "--resize", "16", tmp_path / "s", root, check=0)
    assert [img.shape for _, img in read_rec(tmp_path / "s")] == [(16, 24, 3), (16, 800, 3)]


def test_scaled_jpeg_decode_keeps_exact_sizes_and_quality(cli, tmp_path):
    root = tmp_path / "big"
    root.mkdir()
    big = photo(300, 420)
    cv2.imwrite(str(root / "big.jpg"), big[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, 95])
    data = (root / "big.jpg").read_bytes()
    scaled, full_hw = image.decode(data, 3, min_short=70)
    assert full_hw == (300, 420) and scaled.shape == (75, 105, 3)  # decoded at 1/4 in the DCT domain
    cli(IM2REC, "--list", tmp_path / "b", root, check=0)
    cli(IM2REC, "--resize", "70", tmp_path / "b", root, check=0)
    ((_, img),) = read_rec(tmp_path / "b")
    assert img.shape == (70, 98, 3)
    # no worse than MXNet's way (full decode, bilinear resize, same encoder) against an area-averaged reference
    reference = cv2.resize(big[:, :, ::-1], (98, 70), interpolation=cv2.INTER_AREA).astype(int)
    full = cv2.resize(cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR), (98, 70))
    mxnet_way = cv2.imdecode(cv2.imencode(".jpg", full, [cv2.IMWRITE_JPEG_QUALITY, 95])[1], cv2.IMREAD_COLOR)
    assert np.abs(img - reference).mean() <= 1.1 * np.abs(mxnet_way - reference).mean()


def test_exif_orientation_is_applied_like_opencv(tmp_path):
    rgb = photo(30, 50)
    for orientation in range(1, 9):
        exif = Image.Exif()
        exif[0x0112] = orientation
        buf = io.BytesIO()
        Image.fromarray(rgb).save(buf, "JPEG", quality=95, exif=exif)
        data = buf.getvalue()
        ours = image.decode_to_rgb(data)
        opencv = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)[:, :, ::-1]
        assert ours.shape == opencv.shape, orientation
        assert np.abs(ours.astype(int) - opencv).mean() < 1.5, orientation


def run_in_spawned_process(argv):
    """Run im2rec's main in a process started with 'spawn'; return its exit code."""
    from tools.im2rec import main

    try:
        main(argv)
    except SystemExit as exit_:
        return exit_.code or 0
    return 0


def test_runs_under_spawn_start_method(fixtures, tmp_path):
    shutil.copy(fixtures / "im2rec" / "tiny.lst", tmp_path / "tiny.lst")
    argv = ["--resize", "16", "--num-thread", "2", str(tmp_path / "tiny"), str(fixtures / "im2rec_src")]
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        assert pool.apply(run_in_spawned_process, (argv,)) == 0
    assert len(read_rec(tmp_path / "tiny")) == 9


def test_interrupted_run_leaves_no_rec(fixtures, tmp_path, monkeypatch):
    from tools import im2rec

    shutil.copy(fixtures / "im2rec" / "tiny.lst", tmp_path / "tiny.lst")
    real_call, calls = im2rec.RecordEncoder.__call__, []

    def interrupt_on_fourth(self, item):
        calls.append(item)
        if len(calls) == 4:
            raise KeyboardInterrupt
        return real_call(self, item)

    monkeypatch.setattr(im2rec.RecordEncoder, "__call__", interrupt_on_fourth)
    with pytest.raises(SystemExit) as exit_:
        im2rec.main(["--num-thread", "2", str(tmp_path / "tiny"), str(fixtures / "im2rec_src")])
    assert exit_.value.code == 130
    assert sorted(os.listdir(tmp_path)) == ["tiny.lst"]


def test_missing_image_file_is_skipped_and_listed(cli, fixtures, tmp_path):
    (tmp_path / "m.lst").write_text("0\t0.0\tcat/cat0.jpg\n1\t1.0\tcat/gone.jpg\n")
    proc = cli(IM2REC, tmp_path / "m", fixtures / "im2rec_src", check=0)
    assert "wrote 1 records" in proc.stderr and "skipped 1" in proc.stderr
    assert (tmp_path / "m_failed.lst").read_text().startswith("cat/gone.jpg\tcannot read")
    assert [h.id for h, _ in read_rec(tmp_path / "m")] == [0]
