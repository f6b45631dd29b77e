"""RecordIO framing: the dmlc-core part format (both ways), the memory-mapped reader and the `.idx` file.

File layout (dmlc-core RecordIO, little-endian), one logical record:
    uint32 magic 0xced7230a | uint32 (cflag << 29 | length) | length bytes | zero padding to a multiple of 4
A payload that holds the magic word at a 4-byte-aligned position is written as several parts: the writer cuts it
at each such word (dropping the word) and marks the parts cflag 1 (first), 2 (middle), 3 (last); an uncut record
has cflag 0. The reader joins the parts and puts the magic word back, so a scanner that finds the magic word at an
aligned position always finds a part header. The `.idx` file is text: `key<TAB>byte offset<LF>` per record.

Written by hand because no maintained Python package reads and writes this format without MXNet itself.
`common.recordio` builds MXNet's `mxnet.recordio` API (files, image record headers) on top of this module.
"""

import mmap
import os
import struct

import numpy as np

from common.util import UserError

MAGIC = 0xCED7230A
LEN_BITS = 29  # the length word holds cflag in its top 3 bits and the part's length below
LEN_MASK = (1 << LEN_BITS) - 1
_MAGIC_BYTES = struct.pack("<I", MAGIC)
_PART = struct.Struct("<II")  # magic, cflag << 29 | length
_REBUILD = "rebuild the .idx with rec2idx"


class RecordReader:
    """Random access to the logical records of a `.rec` file through a read-only memory map.

    Pickling keeps only the path and size, so a reader handed to a worker process maps the file again there on its
    first read; nothing of the file is held in Python memory beyond the record being returned.
    """

    def __init__(self, rec_path):
        self.path = os.fspath(rec_path)
        try:
            self.size = os.path.getsize(self.path)
        except OSError as err:
            raise UserError(f"cannot open record file {self.path}: {err.strerror}") from None
        self._mm = None

    def __getstate__(self):
        return {"path": self.path, "size": self.size}

    def __setstate__(self, state):
        self.__dict__.update(state, _mm=None)

    def buffer(self):
        """Return the whole file as a read-only bytes-like object, mapping it on first use."""
        if self._mm is None:
            if self.size == 0:
                self._mm = b""  # mmap refuses empty files
            else:
                with open(self.path, "rb") as f:
                    self._mm = mmap.mmap(f.fileno(), self.size, access=mmap.ACCESS_READ)
        return self._mm

    def close(self):
        """Unmap the file; the next read maps it again."""
        if isinstance(self._mm, mmap.mmap):
            self._mm.close()
        self._mm = None

    def _part(self, mm, pos):
        """Return (cflag, data start, data end, next part's offset) of the part at pos, checking its framing."""
        where = f"{self.path}: byte offset {pos}"
        if pos + _PART.size > self.size:
            if pos >= self.size:
                raise UserError(f"{where} is past the end of the file ({self.size} bytes); {_REBUILD}")
            raise UserError(f"{where}: truncated record header (the file ends at byte {self.size}); rewrite the file")
        magic, lrec = _PART.unpack_from(mm, pos)
        if magic != MAGIC:
            raise UserError(
                f"{where}: bad magic word 0x{magic:08x} (expected 0x{MAGIC:08x}); "
                f"the file is corrupt or not RecordIO, or its .idx is wrong ({_REBUILD})"
            )
        start, length = pos + _PART.size, lrec & LEN_MASK
        nxt = start + ((length + 3) & ~3)
        if nxt > self.size:
            raise UserError(
                f"{where}: truncated record: its {length} bytes run past the end of the file ({self.size} bytes); "
                "the file is incomplete, rewrite it"
            )
        return lrec >> LEN_BITS, start, start + length, nxt

    def _flag_error(self, pos, cflag, expected):
        return UserError(
            f"{self.path}: byte offset {pos}: record part has continuation flag {cflag}, expected {expected}; "
            f"the file is corrupt or its .idx is wrong ({_REBUILD})"
        )

    def read_next(self, offset):
        """Return (record bytes, offset of the next record) for the logical record that starts at offset."""
        mm = self.buffer()
        cflag, start, end, pos = self._part(mm, offset)
        if cflag == 0:
            return mm[start:end], pos
        if cflag != 1:
            raise self._flag_error(offset, cflag, "0 or 1 at the start of a record")
        parts = [mm[start:end]]
        while True:
            cflag, start, end, nxt = self._part(mm, pos)
            if cflag not in (2, 3):
                raise self._flag_error(pos, cflag, "2 or 3 inside a split record")
            parts += [_MAGIC_BYTES, mm[start:end]]
            pos = nxt
            if cflag == 3:
                return b"".join(parts), pos

    def read_at(self, offset):
        """Return the logical record that starts at byte offset (its parts joined if it was split)."""
        return self.read_next(int(offset))[0]


def scan_offsets(rec_path):
    """Return the start offset of every logical record (int64 array), reading only the 8-byte part headers."""
    reader = RecordReader(rec_path)
    mm = reader.buffer()
    offsets, pos, inside = [], 0, False
    try:
        while pos < reader.size:
            cflag, _, _, nxt = reader._part(mm, pos)
            if not inside:
                if cflag not in (0, 1):
                    raise reader._flag_error(pos, cflag, "0 or 1 at the start of a record")
                offsets.append(pos)
            elif cflag not in (2, 3):
                raise reader._flag_error(pos, cflag, "2 or 3 inside a split record")
            inside = cflag in (1, 2)
            pos = nxt
        if inside:
            raise UserError(
                f"{reader.path}: the split record at byte offset {offsets[-1]} has no last part; "
                "the file is incomplete, rewrite it"
            )
    finally:
        reader.close()
    return np.array(offsets, dtype=np.int64)


def frame(buf, uri):
    """Return the chunks that encode one logical record, cut at aligned magic words exactly as dmlc-core does."""
    n = len(buf)
    if n > LEN_MASK:
        raise UserError(f"{uri}: a record of {n} bytes is too large for RecordIO (at most {LEN_MASK} bytes)")
    view, chunks, start = memoryview(buf), [], 0
    i = buf.find(_MAGIC_BYTES)
    while i >= 0:
        if i % 4:
            i = buf.find(_MAGIC_BYTES, i + 1)
            continue
        chunks += [_PART.pack(MAGIC, (1 if start == 0 else 2) << LEN_BITS | (i - start)), view[start:i]]
        start = i + 4
        i = buf.find(_MAGIC_BYTES, start)
    chunks += [_PART.pack(MAGIC, (3 if start else 0) << LEN_BITS | (n - start)), view[start:], b"\0" * (-n % 4)]
    return chunks


def read_index(idx_path, key_type=int):
    """Read an MXNet `.idx` file into (keys: list, offsets: int64 array); blank lines are skipped."""
    idx_path = os.fspath(idx_path)
    try:
        with open(idx_path) as f:
            lines = f.read().splitlines()
    except OSError as err:
        raise UserError(f"cannot read index file {idx_path}: {err.strerror}") from None
    except UnicodeDecodeError:
        raise UserError(f"{idx_path} is not a text .idx file (key<TAB>offset per line); {_REBUILD}") from None
    keys, offsets = [], []
    for number, line in enumerate(lines, 1):
        row = line.strip().split("\t")  # MXNet strips each line before splitting it
        if row == [""]:
            continue
        try:
            key, offset = key_type(row[0]), int(row[1])
            if len(row) != 2 or offset < 0:
                raise ValueError
        except (ValueError, TypeError, IndexError, OverflowError):
            raise UserError(
                f"{idx_path}, line {number}: malformed entry {line[:60]!r}, expected 'key<TAB>byte offset'; {_REBUILD}"
            ) from None
        keys.append(key)
        offsets.append(offset)
    return keys, np.array(offsets, dtype=np.int64)


def check_index(rec_path, offsets, idx_path):
    """Cheaply check that an `.idx` belongs to its `.rec`: offsets inside the file, records start where sampled."""
    reader = RecordReader(rec_path)
    offsets = np.asarray(offsets, dtype=np.int64)
    if offsets.size == 0:
        return
    mismatch = f"{idx_path} does not belong to {reader.path}"
    outside = np.flatnonzero((offsets < 0) | (offsets >= reader.size))
    if outside.size:
        i = int(outside[0])
        raise UserError(
            f"{mismatch}: entry {i + 1} points at byte offset {offsets[i]}, past the end of the .rec "
            f"({reader.size} bytes); {_REBUILD}"
        )
    mm = reader.buffer()
    try:
        for i in sorted(set(np.linspace(0, offsets.size - 1, num=min(offsets.size, 9)).astype(int).tolist())):
            pos = int(offsets[i])
            head = _PART.unpack_from(mm, pos) if pos + _PART.size <= reader.size else (None, 0)
            if head[0] != MAGIC or head[1] >> LEN_BITS not in (0, 1):
                raise UserError(f"{mismatch}: entry {i + 1} (byte offset {pos}) does not start a record; {_REBUILD}")
    finally:
        reader.close()
