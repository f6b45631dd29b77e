"""RecordIO: MXNet 1.9.1's exact bytes (golden files and the live peer), split records, bad input, the CLIs."""

import json
import multiprocessing
import os
import pickle
import signal
import struct
import subprocess
import sys
import tempfile
import textwrap
from concurrent.futures import ProcessPoolExecutor

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from common.recordio import (
    IRHeader,
    MXIndexedRecordIO,
    MXRecordIO,
    RecordReader,
    check_index,
    pack,
    pack_img,
    read_index,
    scan_labels,
    scan_offsets,
    unpack,
    unpack_img,
)
from common.util import UserError
from tools.rec2idx import index_text

MAGIC = struct.pack("<I", 0xCED7230A)


def reference_encode(payload):
    """Encode one record word by word, straight from the dmlc-core format description (independent of _frame)."""
    cuts = [i for i in range(0, len(payload) - 3, 4) if payload[i : i + 4] == MAGIC]
    bounds = [0] + [c + 4 for c in cuts]
    ends = cuts + [len(payload)]
    out = b""
    for k, (a, b) in enumerate(zip(bounds, ends)):
        flag = 0 if not cuts else 1 if k == 0 else 3 if k == len(cuts) else 2
        out += MAGIC + struct.pack("<I", flag << 29 | (b - a)) + payload[a:b]
    return out + b"\0" * (-len(payload) % 4)


def write_indexed(folder, payloads, name="t"):
    """Write payloads with keys 0.. to folder/name.rec and .idx; return the two paths."""
    rec, idx = os.path.join(folder, name + ".rec"), os.path.join(folder, name + ".idx")
    with MXIndexedRecordIO(idx, rec, "w") as w:
        for i, p in enumerate(payloads):
            w.write_idx(i, p)
    return rec, idx


def raw_payloads(fixtures):
    return [bytes.fromhex(h) for h in json.loads((fixtures / "raw.payloads.json").read_text())]


# ---------------------------------------------------------------- golden files written by MXNet 1.9.1


def test_raw_golden_written_identically(fixtures, tmp_path):
    rec, idx = write_indexed(tmp_path, raw_payloads(fixtures), "raw")
    assert open(rec, "rb").read() == (fixtures / "raw.rec").read_bytes()
    assert open(idx, "rb").read() == (fixtures / "raw.idx").read_bytes()


def test_raw_golden_read(fixtures):
    payloads = raw_payloads(fixtures)
    r = MXIndexedRecordIO(fixtures / "raw.idx", fixtures / "raw.rec", "r")
    assert r.keys == list(range(len(payloads)))
    assert [r.read_idx(k) for k in reversed(r.keys)] == payloads[::-1]
    seq = MXRecordIO(fixtures / "raw.rec", "r")
    assert [seq.read() for _ in payloads] == payloads
    assert seq.read() is None
    keys, offsets = read_index(fixtures / "raw.idx")
    assert np.array_equal(scan_offsets(fixtures / "raw.rec"), offsets)


def test_img_golden_headers_and_repack(fixtures, tmp_path):
    """Headers (multi-label included) read as MXNet wrote them; re-packing the same inputs gives the same bytes."""
    meta = json.loads((fixtures / "img.meta.json").read_text())
    r = MXIndexedRecordIO(fixtures / "img.idx", fixtures / "img.rec", "r")
    rec, idx = tmp_path / "img.rec", tmp_path / "img.idx"
    with MXIndexedRecordIO(idx, rec, "w") as w:
        for m in meta:
            header, payload = unpack(r.read_idx(m["key"]))
            assert (header.id, header.id2) == (m["id"], m["id2"])
            if isinstance(m["label"], list):
                assert header.flag == len(m["label"]) and header.label.dtype == np.float32
                assert header.label.tolist() == m["label"]
            else:
                assert (header.flag, header.label) == (0, m["label"])
            w.write_idx(m["key"], pack(IRHeader(0, m["label"], m["id"], m["id2"]), payload))
    assert rec.read_bytes() == (fixtures / "img.rec").read_bytes()
    assert idx.read_bytes() == (fixtures / "img.idx").read_bytes()


def test_img_golden_decode_and_pack_img(fixtures):
    """unpack_img equals MXNet's decode; pack_img of a PNG record's pixels gives MXNet's bytes."""
    meta = json.loads((fixtures / "img.meta.json").read_text())
    r = MXIndexedRecordIO(fixtures / "img.idx", fixtures / "img.rec", "r")
    for m in meta:
        s = r.read_idx(m["key"])
        header, img = unpack_img(s)
        golden = np.load(fixtures / f"img_{m['key']}_decoded_bgr.npy")
        assert img.shape == golden.shape == tuple(m["shape"])
        diff = np.abs(img.astype(int) - golden).max()
        if m["format"] == ".png":
            assert diff == 0
            # PNG is lossless, so the decoded pixels are MXNet's input; the JPEG sources are not in the fixtures
            assert pack_img(IRHeader(0, m["label"], m["id"], m["id2"]), golden, 95, ".png") == s
        else:
            assert diff <= 2  # JPEG: libjpeg versions may round differently


@pytest.mark.parametrize("name", ["raw", "img", "im2rec/tiny", "im2rec/tiny_multi"])
def test_rec2idx_cli_matches_golden(fixtures, tmp_path, cli, name):
    out = tmp_path / "out.idx"
    proc = cli("tools/rec2idx.py", fixtures / f"{name}.rec", out, check=0)
    assert out.read_bytes() == (fixtures / f"{name}.idx").read_bytes()
    assert "records indexed" in proc.stdout


# ---------------------------------------------------------------- split records (payloads holding the magic word)

segments = st.lists(st.one_of(st.binary(max_size=13), st.just(MAGIC), st.just(MAGIC[:3]), st.just(MAGIC[1:])))
payload_st = segments.map(b"".join)


@settings(max_examples=150, deadline=None)
@given(st.lists(payload_st, max_size=6))
def test_roundtrip_property(payloads):
    with tempfile.TemporaryDirectory() as folder:
        rec, idx = write_indexed(folder, payloads)
        data = open(rec, "rb").read()
        assert data == b"".join(reference_encode(p) for p in payloads)
        keys, offsets = read_index(idx)
        assert keys == list(range(len(payloads)))
        assert np.array_equal(scan_offsets(rec), offsets)
        reader = RecordReader(rec)
        assert [reader.read_at(o) for o in offsets] == payloads
        seq = MXRecordIO(rec, "r")
        assert [seq.read() for _ in payloads] == payloads and seq.read() is None
        assert index_text(offsets) == open(idx).read()


def test_split_record_parts():
    """An aligned magic word cuts the record into parts flagged 1, 2, 3; unaligned ones do not."""
    payload = b"abcd" + MAGIC + b"efgh" + MAGIC + b"ij" + MAGIC + b"k"
    with tempfile.TemporaryDirectory() as folder:
        rec, _ = write_indexed(folder, [payload])
        data = open(rec, "rb").read()
        heads, pos = [], 0
        while pos < len(data):
            magic, lrec = struct.unpack_from("<II", data, pos)
            assert magic == 0xCED7230A
            length = lrec & ((1 << 29) - 1)
            heads.append((lrec >> 29, length))
            pos += 8 + (length + 3) // 4 * 4
        assert heads == [(1, 4), (2, 4), (3, 2 + 4 + 1)]
        assert RecordReader(rec).read_at(0) == payload


PEER_SCRIPT = """
import json, sys
import mxnet as mx
folder, payloads = sys.argv[1], [bytes.fromhex(h) for h in json.loads(sys.argv[2])]
w = mx.recordio.MXIndexedRecordIO(folder + "/mx.idx", folder + "/mx.rec", "w")
for i, p in enumerate(payloads):
    w.write_idx(i, p)
w.close()
r = mx.recordio.MXIndexedRecordIO(folder + "/ours.idx", folder + "/ours.rec", "r")
print(json.dumps([r.read_idx(k).hex() for k in r.keys]))
"""


@pytest.mark.mxnet
def test_split_records_against_live_mxnet(mxnet_python, tmp_path):
    """Our file read by MXNet and MXNet's file read by us, for payloads holding the magic word; files identical."""
    payloads = [
        b"",
        MAGIC,
        MAGIC * 3,
        b"ab" + MAGIC + b"cd",
        b"abcd" + MAGIC + b"xy" + MAGIC,
        b"\0" * 8 + MAGIC + b"\1" * 4 + MAGIC + b"z" * 5 + MAGIC,
        MAGIC[:3],
        bytes(range(256)) * 4 + MAGIC + bytes(1000),
    ]
    write_indexed(tmp_path, payloads, "ours")
    script = tmp_path / "peer.py"
    script.write_text(PEER_SCRIPT)
    proc = subprocess.run(
        [str(mxnet_python), str(script), str(tmp_path), json.dumps([p.hex() for p in payloads])],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert [bytes.fromhex(h) for h in json.loads(proc.stdout.strip().splitlines()[-1])] == payloads
    assert (tmp_path / "mx.rec").read_bytes() == (tmp_path / "ours.rec").read_bytes()
    assert (tmp_path / "mx.idx").read_bytes() == (tmp_path / "ours.idx").read_bytes()
    r = MXIndexedRecordIO(tmp_path / "mx.idx", tmp_path / "mx.rec", "r")
    assert [r.read_idx(k) for k in r.keys] == payloads


# ---------------------------------------------------------------- API behaviour


def test_mxrecordio_api(tmp_path):
    rec, idx = tmp_path / "a.rec", tmp_path / "a.idx"
    w = MXIndexedRecordIO(idx, rec, "w")
    tells = []
    for i in range(5):
        w.write_idx(i, b"record_%d" % i)
        tells.append(w.tell())
    assert tells == [16, 32, 48, 64, 80]  # the numbers in MXNet's own tell() example
    assert not rec.exists()  # nothing under the final name before close()
    w.close()
    r = MXIndexedRecordIO(idx, rec, "r")
    assert r.read_idx(3) == b"record_3" and r.read() == b"record_4" and r.read() is None
    r.reset()
    assert r.read() == b"record_0" and r.tell() == 16
    r.close()
    r.reset()  # as in MXNet, reset reopens a closed file
    assert r.read() == b"record_0"
    clone = pickle.loads(pickle.dumps(r))
    assert clone.read_idx(1) == b"record_1" and clone.idx == r.idx
    with pytest.raises(UserError, match="valid values: r, w"):
        MXRecordIO(rec, "a")
    with pytest.raises(TypeError, match="cannot be pickled"), MXRecordIO(tmp_path / "b.rec", "w") as w2:
        pickle.dumps(w2)


def test_writer_reset_and_multilabel_pack(tmp_path):
    rec = tmp_path / "r.rec"
    with MXRecordIO(rec, "w") as w:
        w.write(b"dropped")
        w.reset()
        w.write(pack(IRHeader(9, [1.5, 2, 3], 7, 1), b"img"))
    header, payload = unpack(MXRecordIO(rec, "r").read())
    assert (header.flag, header.id, header.id2, payload) == (3, 7, 1, b"img")
    assert header.label.tolist() == [1.5, 2.0, 3.0]
    assert unpack(pack(IRHeader(5, 4.0, 1, 0), b""))[0] == IRHeader(0, 4.0, 1, 0)


def test_record_reader_pickles_path_only(fixtures):
    reader = RecordReader(fixtures / "img.rec")
    first = reader.read_at(0)
    state = pickle.dumps(reader)
    assert len(state) < 300  # the path and size, not the mapped file
    clone = pickle.loads(state)
    assert clone._mm is None and clone.size == reader.size
    assert clone.read_at(1588) == reader.read_at(1588) and clone.read_at(0) == first


def test_record_reader_in_spawned_process(fixtures):
    """A reader sent to a fresh process maps the file there and returns the same records."""
    reader = RecordReader(fixtures / "img.rec")
    _, offsets = read_index(fixtures / "img.idx")
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        assert list(pool.map(reader.read_at, offsets.tolist())) == [reader.read_at(o) for o in offsets]


def test_interrupted_writers_leave_no_file(tmp_path):
    with pytest.raises(RuntimeError), MXIndexedRecordIO(tmp_path / "e.idx", tmp_path / "e.rec", "w") as w:
        w.write_idx(0, b"partial")
        raise RuntimeError("interrupted")
    assert sorted(os.listdir(tmp_path)) == []


def test_deleted_writer_closes_and_keeps_its_file_as_mxnets(tmp_path):
    # MXNet programs end a writer with `del writer` (or let it go out of scope) and then read the file
    w = MXIndexedRecordIO(tmp_path / "g.idx", tmp_path / "g.rec", "w")
    for i in range(3):
        w.write_idx(i, f"record {i}".encode())
    del w
    assert sorted(os.listdir(tmp_path)) == ["g.idx", "g.rec"]
    r = MXIndexedRecordIO(tmp_path / "g.idx", tmp_path / "g.rec", "r")
    assert [r.read_idx(i) for i in range(3)] == [b"record 0", b"record 1", b"record 2"]


def test_writer_never_closed_keeps_its_file_at_exit(tmp_path):
    script = textwrap.dedent(f"""
        from common.recordio import MXRecordIO
        writer = MXRecordIO({str(tmp_path / "x.rec")!r}, "w")
        writer.write(b"kept")
    """)
    subprocess.run([sys.executable, "-c", script], check=True, timeout=60, cwd=os.path.dirname(__file__) + "/..")
    assert os.listdir(tmp_path) == ["x.rec"]
    assert MXRecordIO(tmp_path / "x.rec", "r").read() == b"kept"


def test_killed_writer_leaves_no_file(tmp_path):
    script = textwrap.dedent(f"""
        import os, signal
        from common.recordio import MXIndexedRecordIO
        w = MXIndexedRecordIO({str(tmp_path / "k.idx")!r}, {str(tmp_path / "k.rec")!r}, "w")
        for i in range(100):
            w.write_idx(i, os.urandom(1000))
        w._file.flush()
        os.kill(os.getpid(), signal.SIGKILL)
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=60)
    assert proc.returncode == -signal.SIGKILL
    names = os.listdir(tmp_path)
    assert "k.rec" not in names and "k.idx" not in names
    assert any(n.startswith("k.rec.") and n.endswith(".tmp") for n in names)  # the data went to the temp name


def test_read_index_errors(tmp_path):
    idx = tmp_path / "x.idx"
    idx.write_text("0\t0\n\n1\t16\n")
    keys, offsets = read_index(idx)
    assert keys == [0, 1] and offsets.dtype == np.int64 and offsets.tolist() == [0, 16]
    for text, line in [("0\t0\n1 16\n", 2), ("0\t0\n1\t-4\n", 2), ("a\t0\n", 1), ("0\t0\t5\n", 1)]:
        idx.write_text(text)
        with pytest.raises(UserError, match=f"x.idx, line {line}: malformed"):
            read_index(idx)
    with pytest.raises(UserError, match="cannot read index file"):
        read_index(tmp_path / "missing.idx")


def test_check_index(fixtures):
    _, offsets = read_index(fixtures / "img.idx")
    check_index(fixtures / "img.rec", offsets, fixtures / "img.idx")
    _, raw = read_index(fixtures / "raw.idx")
    with pytest.raises(UserError, match="raw.idx does not belong to .*img.rec: entry 2"):
        check_index(fixtures / "img.rec", raw, fixtures / "raw.idx")
    with pytest.raises(UserError, match="past the end"):
        check_index(fixtures / "raw.rec", offsets * 1000, "i.idx")


def test_reader_framing_errors(tmp_path, fixtures):
    data = (fixtures / "img.rec").read_bytes()
    (tmp_path / "t.rec").write_bytes(data[:5000])
    reader = RecordReader(tmp_path / "t.rec")
    assert reader.read_at(1588)[:4] == b"\0\0\0\0"
    with pytest.raises(UserError, match=r"t.rec: byte offset 3920: truncated record"):
        reader.read_at(3920)
    with pytest.raises(UserError, match="byte offset 8: bad magic word"):
        reader.read_at(8)
    with pytest.raises(UserError, match="byte offset 5000 is past the end"):
        reader.read_at(5000)


# ---------------------------------------------------------------- start-up label scan


def per_record_labels(reader, offsets):
    """The reference scan: each record read whole and unpacked in Python, one at a time."""
    rows, sizes = [], []
    for off in offsets:
        header, payload = unpack(reader.read_at(off))
        rows.append(np.atleast_1d(np.asarray(header.label, np.float32)))
        sizes.append(len(payload))
    return rows, sizes


def test_scan_labels_equals_per_record_scan(tmp_path):
    magic_label = np.frombuffer(MAGIC, np.float32)[0]  # as the 2nd of 3 labels it sits at an aligned byte 28
    records = [
        (IRHeader(0, 3, 0, 0), b"one"),
        (IRHeader(0, 2.75, 1, 0), b"float label"),
        (IRHeader(0, [1, -0.5], 2, 0), b"two labels"),
        (IRHeader(0, [4, 5, 6, 7.25], 3, 0), b"four"),
        (IRHeader(0, [9], 4, 0), b"one label in an array"),
        (IRHeader(0, [1, magic_label, 2], 5, 0), b"split inside the labels"),
        (IRHeader(0, 8, 6, 0), b"abcd" + MAGIC + b"split inside the payload"),
        (IRHeader(0, [5, 6], 7, 0), b""),  # a header record: labels, no image
        (IRHeader(0, -1e-3, 8, 0), b"last"),
    ]
    w = MXIndexedRecordIO(tmp_path / "l.idx", tmp_path / "l.rec", "w")
    for k, (header, payload) in enumerate(records):
        w.write_idx(k, pack(header, payload))
    w.close()
    _, offsets = read_index(tmp_path / "l.idx")
    raw = (tmp_path / "l.rec").read_bytes()
    assert [struct.unpack_from("<I", raw, o + 4)[0] >> 29 for o in offsets[5:7]] == [1, 1]  # really split
    reader = RecordReader(tmp_path / "l.rec")
    for order in (offsets, offsets[::-1], offsets[[6, 0, 5, 5, 3]]):
        labels, count, payload = scan_labels(reader, order)
        rows, sizes = per_record_labels(reader, order)
        assert labels.dtype == np.float32 and labels.shape == (len(order), max(len(r) for r in rows))
        assert count.tolist() == [len(r) for r in rows] and payload.tolist() == sizes
        for got, row in zip(labels, rows):
            assert np.array_equal(got[: len(row)], row) and not got[len(row) :].any()
    labels, count, payload = scan_labels(reader, offsets)
    assert payload.tolist() == [len(p) for _, p in records]
    assert labels[5, :3].tobytes() == np.array([1, magic_label, 2], np.float32).tobytes()
    assert labels[1, 0] == np.float32(2.75) and labels[8, 0] == np.float32(-1e-3)
    assert scan_labels(reader, offsets[:0])[0].shape == (0, 1)


def test_scan_labels_errors(tmp_path):
    w = MXRecordIO(tmp_path / "s.rec", "w")
    w.write(pack(IRHeader(0, 1, 0, 0), b"fine"))
    w.write(struct.pack("<IfQQ", 3, 0, 0, 0) + b"\0" * 8)  # claims 3 labels, holds 2
    w.close()
    reader = RecordReader(tmp_path / "s.rec")
    with pytest.raises(UserError, match=r"s.rec: byte offset 36: a record of 32 bytes is too short .*\(36 bytes\)"):
        scan_labels(reader, [0, 36])
    with pytest.raises(UserError, match="byte offset 4: bad magic word"):
        scan_labels(reader, [0, 4])
    w = MXRecordIO(tmp_path / "t.rec", "w")
    w.write(b"tiny")  # smaller than any image header
    w.close()
    with pytest.raises(UserError, match=r"byte offset 0: a record of 4 bytes is too short"):
        scan_labels(RecordReader(tmp_path / "t.rec"), [0])


# ---------------------------------------------------------------- verify-rec through its command line


def test_verify_rec_ok(cli, fixtures):
    proc = cli("tools/verify_rec.py", fixtures / "im2rec" / "tiny_multi", "--label-width", "2", check=0)
    line = proc.stdout.strip()
    assert line.startswith("OK ") and "\n" not in line
    assert "9 records" in line and "9 decoded" in line and "9 multi-label" in line and "9 entries OK" in line


def bad_cases(fixtures, tmp):
    """Yield (case name, argv, expected message fragments) for broken inputs built from img.rec in tmp."""
    data = (fixtures / "img.rec").read_bytes()
    bad_magic = bytearray(data)
    bad_magic[3920] ^= 0xFF
    (tmp / "magic.rec").write_bytes(bytes(bad_magic))
    yield "bad magic", [tmp / "magic.rec"], ["record 2", "byte offset 3920", "bad magic word"]
    (tmp / "trunc.rec").write_bytes(data[:-3])
    yield "truncated", [tmp / "trunc.rec"], ["record 5", "byte offset 11524", "truncated record"]
    (tmp / "good.rec").write_bytes(data)
    (tmp / "past.idx").write_text((fixtures / "img.idx").read_text() + f"6\t{len(data) + 8}\n")
    yield (
        "idx past end",
        [tmp / "good.rec", "--idx", tmp / "past.idx"],
        ["past.idx does not belong", "entry 7", "past the end"],
    )
    (tmp / "bad.idx").write_text("0\t0\n1\t1588\nx\n")
    yield "malformed idx", [tmp / "good.rec", "--idx", tmp / "bad.idx"], ["bad.idx, line 3: malformed"]
    yield (
        "other idx",
        [tmp / "good.rec", "--idx", fixtures / "raw.idx"],
        ["raw.idx does not belong to", "good.rec: entry 2 (byte offset 8)"],
    )
    with MXRecordIO(tmp / "junk.rec", "w") as w:
        w.write(pack(IRHeader(0, 1.0, 0, 0), b"not an image"))
    yield "undecodable", [tmp / "junk.rec"], ["record 0 at byte offset 0", "does not decode"]
    yield "label width", [tmp / "good.rec", "--label-width", "3"], ["record 0", "1 labels, expected --label-width 3"]
    yield "missing", [tmp / "nothing"], ["nothing.rec not found"]


def test_verify_rec_bad_inputs(cli, fixtures, tmp_path):
    """Every broken input ends in exit status 2 and one line naming the file, record and offset."""
    for name, argv, fragments in bad_cases(fixtures, tmp_path):
        proc = cli("tools/verify_rec.py", *argv)
        err = proc.stderr.strip()
        assert proc.returncode == 2, (name, proc.stdout, err)
        assert "\n" not in err and "Traceback" not in err, (name, err)
        for fragment in fragments:
            assert fragment in err, (name, err)
