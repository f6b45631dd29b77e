"""MXNet's `.params` file (an NDArray list, `mx.nd.save` / `mx.nd.load`) read and written without MXNet.

Written by hand because no maintained library reads this format without MXNet itself, which no longer installs
beside current numpy. Layout, all little-endian:
  u64 0x112 (list magic), u64 reserved, u64 number of arrays, then per array:
    u32 magic: 0xF993FAC8 (V1), 0xF993FAC9 (V2), 0xF993FACA (V3, numpy shape semantics); anything else is the
        ndim of a legacy array whose dims follow as u32
    i32 storage type (V2, V3 only; 0 = dense; sparse arrays are not supported)
    shape: i32 ndim, then ndim i64 dims (V1 and later)
    context: i32 device type, i32 device id (not kept: arrays load on the CPU)
    i32 dtype flag (mshadow's type codes), then the raw elements
  u64 number of names, then per name u64 length and the UTF-8 bytes ('arg:NAME' / 'aux:NAME').
"""

import math
import struct

import numpy as np

from common.util import UserError, atomic_write

LIST_MAGIC = 0x112
V1, V2, V3 = 0xF993FAC8, 0xF993FAC9, 0xF993FACA
# mshadow type flags -> numpy dtypes (bfloat16, flag 12, is read as its bits and widened to float32)
DTYPES = {
    0: np.float32,
    1: np.float64,
    2: np.float16,
    3: np.uint8,
    4: np.int32,
    5: np.int8,
    6: np.int64,
    7: np.bool_,
    8: np.int16,
    9: np.uint16,
    10: np.uint32,
    11: np.uint64,
    12: np.uint16,
}
BFLOAT16 = 12


class _Reader:
    """A cursor over the file's bytes that names the file and offset when they run out."""

    def __init__(self, path, buf):
        self.path, self.buf, self.pos = path, buf, 0

    def fail(self, what):
        raise UserError(
            f"{self.path}: {what} at byte offset {self.pos}; the MXNet .params file is truncated or corrupt"
        )

    def take(self, n, what):
        if n < 0 or self.pos + n > len(self.buf):
            self.fail(f"{what} ({n} bytes) runs past the end of the file ({len(self.buf)} bytes)")
        out = self.buf[self.pos : self.pos + n]
        self.pos += n
        return out

    def unpack(self, fmt, what):
        return struct.unpack("<" + fmt, self.take(struct.calcsize("<" + fmt), what))


def _read_array(r, index):
    """One NDArray at the cursor -> numpy array (dense, on the CPU)."""
    start = r.pos
    (magic,) = r.unpack("I", f"magic of array {index}")
    if magic in (V2, V3):
        (stype,) = r.unpack("i", f"storage type of array {index}")
        if stype != 0:
            r.pos = start
            r.fail(f"array {index} is sparse (storage type {stype}); only dense arrays are supported")
    if magic in (V1, V2, V3):
        (ndim,) = r.unpack("i", f"ndim of array {index}")
        if not 0 <= ndim <= 32 and not (magic == V3 and ndim == -1):
            r.fail(f"array {index} has an impossible ndim {ndim}")
        shape = r.unpack(f"{max(ndim, 0)}q", f"shape of array {index}")
    elif magic <= 32:  # legacy layout: the magic slot holds ndim, dims are u32
        shape = r.unpack(f"{magic}I", f"shape of array {index}")
    else:
        r.pos = start
        r.fail(f"array {index} starts with an unknown magic 0x{magic:08X}")
    if (magic != V3 and len(shape) == 0) or (magic == V3 and len(shape) == 0 and ndim == -1):
        return np.zeros((0,), np.float32)  # MXNet writes nothing more for an empty array
    if any(d < 0 for d in shape):
        r.fail(f"array {index} has a negative dimension in shape {shape}")
    r.unpack("ii", f"context of array {index}")
    (flag,) = r.unpack("i", f"dtype of array {index}")
    if flag not in DTYPES:
        r.fail(f"array {index} has an unknown dtype flag {flag}")
    dtype = np.dtype(DTYPES[flag]).newbyteorder("<")
    count = math.prod(shape)  # Python ints: a crafted shape cannot overflow into a small size
    if count * dtype.itemsize > len(r.buf) - r.pos:
        r.fail(f"array {index} of shape {shape} needs {count * dtype.itemsize} bytes, more than the file has left")
    arr = np.frombuffer(r.take(count * dtype.itemsize, f"data of array {index}"), dtype=dtype).reshape(shape)
    if flag == BFLOAT16:
        return (arr.astype(np.uint32) << 16).view(np.float32)
    return arr.astype(dtype.newbyteorder("="), copy=True)


def load(path):
    """Read an MXNet .params file into {name: numpy array}, in file order; UserError naming the file if bad."""
    try:
        with open(path, "rb") as f:
            buf = f.read()
    except FileNotFoundError:
        raise UserError(f"{path} not found; pass the prefix and epoch of an existing MXNet checkpoint") from None
    r = _Reader(path, memoryview(buf))
    magic, _reserved = r.unpack("QQ", "header")
    if magic != LIST_MAGIC:
        r.pos = 0
        r.fail(f"header magic is 0x{magic:X}, not 0x{LIST_MAGIC:X} (not an MXNet NDArray file)")
    (count,) = r.unpack("Q", "array count")
    if count > len(buf):
        r.fail(f"array count {count} is larger than the file")
    arrays = [_read_array(r, i) for i in range(count)]
    (nnames,) = r.unpack("Q", "name count")
    if nnames not in (0, count):
        r.fail(f"{nnames} names for {count} arrays")
    names = []
    for i in range(nnames):
        (n,) = r.unpack("Q", f"length of name {i}")
        names.append(bytes(r.take(n, f"name {i}")).decode("utf-8", errors="replace"))
    if r.pos != len(buf):
        r.fail(f"{len(buf) - r.pos} unexpected bytes after the last name")
    if not names:
        names = [str(i) for i in range(count)]
    return dict(zip(names, arrays))


def dumps(arrays):
    """Encode {name: numpy array} as MXNet's V2 NDArray list (dense, CPU), the bytes mx.nd.save writes."""
    flags = {np.dtype(v): k for k, v in DTYPES.items() if k != BFLOAT16}
    out = [struct.pack("<QQQ", LIST_MAGIC, 0, len(arrays))]
    for name, arr in arrays.items():
        arr = np.ascontiguousarray(arr)
        if arr.dtype not in flags:
            raise UserError(f"array {name!r} has dtype {arr.dtype}, which MXNet cannot store")
        out.append(struct.pack(f"<Iii{arr.ndim}q", V2, 0, arr.ndim, *arr.shape))
        if arr.ndim:
            out.append(struct.pack("<iii", 1, 0, flags[arr.dtype]))
            out.append(arr.astype(arr.dtype.newbyteorder("<"), copy=False).tobytes())
    out.append(struct.pack("<Q", len(arrays)))
    for name in arrays:
        raw = name.encode("utf-8")
        out.append(struct.pack("<Q", len(raw)) + raw)
    return b"".join(out)


def save(path, arrays):
    """Write {name: numpy array} to path as an MXNet .params file (atomically)."""
    atomic_write(path, dumps(arrays))
