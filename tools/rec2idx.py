"""Rebuild the `.idx` of a `.rec` file, as MXNet's `tools/rec2idx.py`: key = record number (0, 1, ...)."""

import argparse
import os
import sys
import time

if __package__ in (None, ""):  # run as `python tools/rec2idx.py`: make the repository root importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from common import options  # noqa: E402
from common.recordio import scan_offsets  # noqa: E402
from common.util import atomic_write, main_guard  # noqa: E402


def parse_args(argv=None):
    """Parse the command line: the `.rec` to read and the `.idx` to write."""
    parser = argparse.ArgumentParser(
        description="Write the .idx (record number<TAB>byte offset per line) of a RecordIO .rec file",
        formatter_class=options.HelpFormatter,
    )
    parser.add_argument("record", help="path of the .rec file to index")
    parser.add_argument("index", help="path of the .idx file to write (replaced when complete)")
    return parser.parse_args(argv)


def index_text(offsets):
    """Return the `.idx` text for record offsets in file order; keys are record numbers, as MXNet writes them."""
    return "".join(f"{key}\t{offset}\n" for key, offset in enumerate(offsets.tolist()))


@main_guard
def main(argv=None):
    """Scan the `.rec` part headers and write its `.idx` atomically."""
    args = parse_args(argv)
    start = time.time()
    offsets = scan_offsets(args.record)
    atomic_write(args.index, index_text(offsets).encode())
    print(f"{args.index}: {len(offsets)} records indexed in {time.time() - start:.2f} s")


if __name__ == "__main__":
    main()
