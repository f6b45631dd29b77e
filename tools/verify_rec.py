"""Check every record of a `.rec` file (framing, IRHeader, label count, image decode) and its `.idx`.

Stops at the first bad record: after a framing error the rest of the file cannot be located reliably, so one
exact message (record number, byte offset, what is wrong) is more useful than a count. Exit status 0 when all is
well, 2 with one line on stderr otherwise.
"""

import argparse
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

if __package__ in (None, ""):  # run as `python tools/verify_rec.py`: make the repository root importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from common import flags, image, options
from common.recordio import RecordReader, check_index, read_index, unpack_header
from common.util import UserError, main_guard

_BATCH = 256  # records decoded in parallel at a time (libjpeg-turbo and OpenCV release the GIL while decoding)


def parse_args(argv=None):
    """Parse the command line."""
    parser = argparse.ArgumentParser(description="Check a RecordIO .rec file of packed images, record by record")
    parser.add_argument("rec", metavar="PREFIX_OR_REC", help="the .rec file, or its prefix (PREFIX.rec)")
    parser.add_argument("--idx", help="the .idx to check against the .rec (default: the .idx beside it, if any)")
    parser.add_argument("--label-width", type=flags.count(), help="number of labels every record must carry")
    parser.add_argument("--no-decode", action="store_true", help="skip decoding the images (framing and headers only)")
    parser.add_argument(
        "--max-image-pixels",
        type=flags.integer(min=0),
        default=options.MAX_IMAGE_PIXELS,
        help="a record whose image header claims more pixels is bad, as training skips it (0: no limit)",
    )
    return parser.parse_args(argv)


def resolve_paths(rec, idx):
    """Return (rec path, idx path or None) from a `.rec` path or prefix and the --idx flag."""
    if not rec.endswith(".rec") and not os.path.isfile(rec):
        rec += ".rec"
    if not os.path.isfile(rec):
        raise UserError(f"record file {rec} not found; give the .rec path or its prefix")
    if idx is None:
        beside = os.path.splitext(rec)[0] + ".idx"
        idx = beside if os.path.isfile(beside) else None
    return rec, idx


def check_header(buf, where, label_width):
    """Return (payload start, header flag) of one packed record, raising UserError if its header is wrong."""
    if len(buf) < 24:
        raise UserError(f"{where}: {len(buf)} bytes, too short for the 24-byte IRHeader; is this an image .rec?")
    flag = int.from_bytes(buf[:4], "little")
    if 24 + 4 * flag > len(buf):
        raise UserError(f"{where}: header says {flag} labels but the record holds only {len(buf)} bytes")
    _, start = unpack_header(buf)
    labels = max(flag, 1)
    if label_width is not None and labels != label_width:
        raise UserError(f"{where}: {labels} labels, expected --label-width {label_width}")
    return start, flag


def why_not_decodes(buf, start, max_pixels):
    """None if the payload of a packed record decodes as training decodes it, else the reason it does not."""
    try:
        image.decode(buf[start:], 3, max_pixels=max_pixels)
    except image.DecodeError as err:
        return str(err)
    return None


def check_batch(pool, batch, max_pixels):
    """Decode a batch of (where, record, payload start) in parallel; raise for the first failure."""
    results = pool.map(why_not_decodes, [b[1] for b in batch], [b[2] for b in batch], [max_pixels] * len(batch))
    for (where, buf, start), reason in zip(batch, results):
        if reason is not None:
            raise UserError(f"{where}: its {len(buf) - start} byte payload does not decode as an image: {reason}")


def scan(reader, label_width, decode, max_pixels):
    """Check every record in file order (decode: images too, up to max_pixels); return (offsets, multi-label count)."""
    offsets, multi, batch, pos = [], 0, [], 0
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        while pos < reader.size:
            try:
                buf, nxt = reader.read_next(pos)
            except UserError as err:
                raise UserError(
                    f"{reader.path}: record {len(offsets)}: {str(err).removeprefix(reader.path + ': ')}"
                ) from None
            where = f"{reader.path}: record {len(offsets)} at byte offset {pos}"
            start, flag = check_header(buf, where, label_width)
            multi += flag > 0  # labels stored as an array after the header (im2rec --pack-label)
            if decode:
                batch.append((where, buf, start))
                if len(batch) == _BATCH:
                    check_batch(pool, batch, max_pixels)
                    batch = []
            offsets.append(pos)
            pos = nxt
        check_batch(pool, batch, max_pixels)
    return np.array(offsets, dtype=np.int64), multi


def check_full_index(rec, idx, rec_offsets):
    """Check that every `.idx` entry points at the start of a record of `.rec`; return the entry count."""
    _, offsets = read_index(idx)
    check_index(rec, offsets, idx)
    bad = np.flatnonzero(~np.isin(offsets, rec_offsets))
    if bad.size:
        i = int(bad[0])
        raise UserError(
            f"{idx} does not belong to {rec}: entry {i + 1} (byte offset {offsets[i]}) does not start a "
            "record; rebuild the .idx with rec2idx"
        )
    return offsets.size


@main_guard
def main(argv=None):
    """Verify a `.rec` (and its `.idx`) and print a one-line summary."""
    args = parse_args(argv)
    rec, idx = resolve_paths(args.rec, args.idx)
    start = time.time()
    reader = RecordReader(rec)
    if idx is not None:  # the cheap check first, so a wrong .idx is reported before a long scan
        check_index(rec, read_index(idx)[1], idx)
    offsets, multi = scan(reader, args.label_width, not args.no_decode, args.max_image_pixels)
    index = f", {idx}: {check_full_index(rec, idx, offsets)} entries OK" if idx is not None else ", no .idx"
    images = "not decoded" if args.no_decode else f"{len(offsets)} decoded"
    print(
        f"OK {rec}: {len(offsets)} records, {reader.size} bytes, images {images}, {multi} multi-label{index}, "
        f"{time.time() - start:.2f} s"
    )


if __name__ == "__main__":
    main()
