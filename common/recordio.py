"""MXNet RecordIO: the `mxnet.recordio` API with MXNet 1.9.1's exact bytes, read through a memory map.

File layout (dmlc-core RecordIO, little-endian), one logical record:
    uint32 magic 0xced7230a | uint32 (cflag << 29 | length) | length bytes | zero padding to a multiple of 4
A payload that holds the magic word at a 4-byte-aligned position is written as several parts: the writer cuts it
at each such word (dropping the word) and marks the parts cflag 1 (first), 2 (middle), 3 (last); an uncut record
has cflag 0. The reader joins the parts and puts the magic word back, so a scanner that finds the magic word at an
aligned position always finds a part header. The `.idx` file is text: `key<TAB>byte offset<LF>` per record.

Written by hand because no maintained Python package reads and writes this format without MXNet itself.
"""

import mmap
import numbers
import os
import secrets
import struct
import warnings
from collections import namedtuple

import cv2
import numpy as np

from common.util import UserError, choice_error

MAGIC = 0xCED7230A
_MAGIC_BYTES = struct.pack("<I", MAGIC)
_PART = struct.Struct("<II")  # magic, cflag << 29 | length
_LEN_BITS = 29
_LEN_MASK = (1 << _LEN_BITS) - 1
_IR = struct.Struct("<IfQQ")  # IRHeader: flag, label, id, id2 (24 bytes, as MXNet's native 'IfQQ' on x86/ARM)
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

    def _map(self):
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
        start, length = pos + _PART.size, lrec & _LEN_MASK
        nxt = start + ((length + 3) & ~3)
        if nxt > self.size:
            raise UserError(
                f"{where}: truncated record: its {length} bytes run past the end of the file ({self.size} bytes); "
                "the file is incomplete, rewrite it"
            )
        return lrec >> _LEN_BITS, start, start + length, nxt

    def _flag_error(self, pos, cflag, expected):
        return UserError(
            f"{self.path}: byte offset {pos}: record part has continuation flag {cflag}, expected {expected}; "
            f"the file is corrupt or its .idx is wrong ({_REBUILD})"
        )

    def read_next(self, offset):
        """Return (record bytes, offset of the next record) for the logical record that starts at offset."""
        mm = self._map()
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
    mm = reader._map()
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
    mm = reader._map()
    try:
        for i in sorted(set(np.linspace(0, offsets.size - 1, num=min(offsets.size, 9)).astype(int).tolist())):
            pos = int(offsets[i])
            head = _PART.unpack_from(mm, pos) if pos + _PART.size <= reader.size else (None, 0)
            if head[0] != MAGIC or head[1] >> _LEN_BITS not in (0, 1):
                raise UserError(f"{mismatch}: entry {i + 1} (byte offset {pos}) does not start a record; {_REBUILD}")
    finally:
        reader.close()


def _frame(buf, uri):
    """Return the chunks that encode one logical record, cut at aligned magic words exactly as dmlc-core does."""
    n = len(buf)
    if n > _LEN_MASK:
        raise UserError(f"{uri}: a record of {n} bytes is too large for RecordIO (at most {_LEN_MASK} bytes)")
    view, chunks, start = memoryview(buf), [], 0
    i = buf.find(_MAGIC_BYTES)
    while i >= 0:
        if i % 4:
            i = buf.find(_MAGIC_BYTES, i + 1)
            continue
        chunks += [_PART.pack(MAGIC, (1 if start == 0 else 2) << _LEN_BITS | (i - start)), view[start:i]]
        start = i + 4
        i = buf.find(_MAGIC_BYTES, start)
    chunks += [_PART.pack(MAGIC, (3 if start else 0) << _LEN_BITS | (n - start)), view[start:], b"\0" * (-n % 4)]
    return chunks


class MXRecordIO:
    """Sequential reader ('r') or writer ('w') of a `.rec` file, as `mxnet.recordio.MXRecordIO`.

    Writing goes to a temporary file beside `uri` that `close()` renames to `uri`, so an interrupted writer never
    leaves a complete-looking `.rec` (a deliberate improvement over MXNet, which writes in place). A writer that is
    garbage-collected or leaves a `with` block by an exception without `close()` discards its file and warns.
    """

    def __init__(self, uri, flag):
        self.uri = os.fspath(uri)
        self.flag = flag
        self.is_open = False
        self.open()

    def open(self):
        """Open the file: 'r' maps it for reading, 'w' starts a new temporary file."""
        if self.flag == "r":
            self._reader, self._pos = RecordReader(self.uri), 0
        elif self.flag == "w":
            self._temps, self._owner = [], os.getpid()
            self._file = self._open_temp(self.uri, "wb")
        else:
            raise choice_error("RecordIO flag", self.flag, ["r", "w"])
        self.writable = self.flag == "w"
        self.is_open = True

    def _open_temp(self, final, mode):
        tmp = f"{final}.{os.getpid()}-{secrets.token_hex(4)}.tmp"
        try:
            f = open(tmp, mode)
        except OSError as err:
            raise UserError(f"cannot write {final}: {err.strerror}") from None
        self._temps.append((f, tmp, final))
        return f

    def close(self):
        """Close the file; a writer's temporary file is flushed to disk and renamed to its final name."""
        if not self.is_open:
            return
        self.is_open = False
        if not self.writable:
            self._reader.close()
            return
        for f, _, _ in self._temps:
            f.flush()
            os.fsync(f.fileno())
            f.close()
        for _, tmp, final in self._temps:  # the .rec first: an .idx under its final name implies a complete .rec
            os.replace(tmp, final)

    def _discard(self):
        self.is_open = False
        for f, tmp, _ in self._temps:
            f.close()
            if os.path.exists(tmp):
                os.unlink(tmp)

    def __del__(self):
        # only in the process that opened it: a forked child must not delete its parent's file
        if getattr(self, "is_open", False) and self.writable and self._owner == os.getpid():
            warnings.warn(
                f"RecordIO writer for {self.uri} was not closed; its output is discarded", RuntimeWarning, stacklevel=2
            )
            self._discard()

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is not None and self.is_open and self.writable:
            self._discard()
        else:
            self.close()

    def __getstate__(self):
        if self.is_open and self.writable:
            raise TypeError(f"an open RecordIO writer ({self.uri}) cannot be pickled")
        return dict(self.__dict__)  # a reader's RecordReader pickles its path and maps the file again

    def reset(self):
        """Go back to the first record; a writer starts its file again from empty, as MXNet's does."""
        if not self.is_open:  # MXNet's reset reopens a closed file
            self.open()
        elif not self.writable:
            self._pos = 0
        else:
            for f, _, _ in self._temps:
                f.seek(0)
                f.truncate()

    def tell(self):
        """Return the byte offset of the next record to read or write."""
        return self._file.tell() if self.writable else self._pos

    def write(self, buf):
        """Append one record (bytes-like)."""
        if not (self.is_open and self.writable):
            raise ValueError(f"{self.uri} is not open for writing")
        if not isinstance(buf, (bytes, bytearray)):
            buf = bytes(buf)
        try:
            self._file.writelines(_frame(buf, self.uri))
        except OSError as err:  # a full disk, most often
            raise UserError(f"cannot write {self.uri}: {err.strerror}") from None

    def read(self):
        """Return the next record as bytes, or None at the end of the file."""
        if not self.is_open or self.writable:
            raise ValueError(f"{self.uri} is not open for reading")
        if self._pos >= self._reader.size:
            return None
        buf, self._pos = self._reader.read_next(self._pos)
        return buf


class MXIndexedRecordIO(MXRecordIO):
    """Random-access reader or writer of a `.rec` with its `.idx`, as `mxnet.recordio.MXIndexedRecordIO`."""

    def __init__(self, idx_path, uri, flag, key_type=int):
        self.idx_path = os.fspath(idx_path)
        self.key_type = key_type
        self.idx = {}
        self.keys = []
        super().__init__(uri, flag)

    def open(self):
        """Open the `.rec` and its `.idx` (read and checked against the `.rec` when reading)."""
        super().open()
        if self.writable:
            self.idx, self.keys = {}, []
            self._fidx = self._open_temp(self.idx_path, "w")
        else:
            keys, offsets = read_index(self.idx_path, self.key_type)
            check_index(self.uri, offsets, self.idx_path)
            self.keys, self.idx = keys, dict(zip(keys, offsets.tolist()))

    def reset(self):
        """Go back to the first record; a writer starts both files again from empty."""
        super().reset()
        if self.writable:
            self.idx, self.keys = {}, []

    def seek(self, idx):
        """Move the read position to the record with key idx."""
        if self.writable:
            raise ValueError(f"{self.uri} is open for writing; seek needs 'r'")
        self._pos = self.idx[idx]

    def read_idx(self, idx):
        """Return the record with key idx."""
        self.seek(idx)
        return self.read()

    def write_idx(self, idx, buf):
        """Append a record under key idx and add `key<TAB>offset` to the `.idx`."""
        key = self.key_type(idx)
        pos = self.tell()
        self.write(buf)
        self._fidx.write(f"{key!s}\t{pos}\n")
        self.idx[key] = pos
        self.keys.append(key)


IRHeader = namedtuple("HEADER", ["flag", "label", "id", "id2"])
IRHeader.__doc__ = "Image record header: flag (label count when > 0), label (float or float32 array), id, id2."


def pack(header, s):
    """Prefix payload s with its IRHeader; an array label is stored after the header and counted in flag."""
    header = IRHeader(*header)
    if isinstance(header.label, numbers.Number):
        return _IR.pack(0, header.label, header.id, header.id2) + bytes(s)
    label = np.asarray(header.label, dtype=np.float32)
    return b"".join([_IR.pack(label.size, 0, header.id, header.id2), label.tobytes(), s])


def unpack_header(s):
    """Return (IRHeader, byte offset of the payload) of a packed record, without copying the payload."""
    header = IRHeader(*_IR.unpack_from(s, 0))
    if header.flag > 0:
        label = np.frombuffer(s, np.float32, header.flag, _IR.size)
        return header._replace(label=label), _IR.size + 4 * header.flag
    return header, _IR.size


def unpack(s):
    """Split a packed record into (IRHeader, payload bytes); label is a float32 array when flag > 0."""
    header, start = unpack_header(s)
    return header, s[start:]


def unpack_img(s, iscolor=-1):
    """Split a packed record into (IRHeader, image decoded by OpenCV in BGR order)."""
    header, start = unpack_header(s)
    return header, cv2.imdecode(np.frombuffer(s, np.uint8, offset=start), iscolor)


def pack_img(header, img, quality=95, img_fmt=".jpg"):
    """Encode img with OpenCV (JPEG quality or PNG compression level from `quality`) and pack it with header."""
    fmt = img_fmt.upper()
    if fmt in (".JPG", ".JPEG"):
        params = [cv2.IMWRITE_JPEG_QUALITY, quality]
    elif fmt == ".PNG":
        # OpenCV uses level 9 for any larger value (MXNet's default 95 is a JPEG quality); clamping here gives the
        # same bytes and keeps OpenCV 5 from warning once per image
        params = [cv2.IMWRITE_PNG_COMPRESSION, min(quality, 9)]
    else:
        params = []  # other formats take OpenCV's defaults, as in MXNet
    ok, buf = cv2.imencode(img_fmt, img, params)
    if not ok:
        raise UserError(f"OpenCV could not encode an image of shape {img.shape} as {img_fmt}")
    return pack(header, buf.tobytes())
