"""Image decode, convert, resize and encode helpers shared by im2rec and the data pipeline.

Arrays are HxWxC uint8 in RGB order (C=3), or HxWx1 for grayscale; nothing here returns BGR.
JPEGs go through libjpeg-turbo (simplejpeg), which releases the GIL and can decode at 1/2, 1/4 or 1/8
scale in the DCT domain; every other format, and the rare JPEG it refuses (CMYK, 12-bit), goes through
OpenCV. Both paths apply the EXIF orientation, as OpenCV's imread (and so MXNet) does.
Every failure (empty, truncated or corrupt data, not an image, a header claiming more than max_pixels) is a
DecodeError whose text is the reason, so callers skip and count the image and say why.
"""

import io
import warnings

import cv2
import numpy as np
import simplejpeg
from PIL import Image

from common.options import MAX_IMAGE_PIXELS

JPEG_MAGIC = b"\xff\xd8\xff"
# Only these DCT-domain factors run libjpeg-turbo's SIMD code; 3/4, 5/8 etc. were measured slower than
# a full decode (about 1.2 ms against 0.8 ms for a 500x375 photo), so they are never asked for.
_FAST_SCALES = (8, 4, 2)
_EXIF_ORIENTATION = 0x0112
_CV2_FLAGS = {3: cv2.IMREAD_COLOR, 1: cv2.IMREAD_GRAYSCALE, -1: cv2.IMREAD_UNCHANGED}


def _orientation(data):
    """EXIF orientation (1..8) of an encoded image; 1 when it has none."""
    if data.find(b"Exif\0\0", 0, 65536) < 0:  # EXIF lives in an APP1 segment near the start; find() copies nothing
        return 1
    try:
        return int(Image.open(io.BytesIO(data)).getexif().get(_EXIF_ORIENTATION, 1))
    except Exception:  # a broken EXIF block must not lose an image that decodes
        return 1


# EXIF orientation -> the array operation that turns the stored pixels upright (PIL's exif_transpose table)
_UPRIGHT = {
    2: lambda a: a[:, ::-1],
    3: lambda a: a[::-1, ::-1],
    4: lambda a: a[::-1],
    5: lambda a: a.swapaxes(0, 1),
    6: lambda a: np.rot90(a, -1),
    7: lambda a: a[::-1, ::-1].swapaxes(0, 1),
    8: lambda a: np.rot90(a, 1),
}


def _apply_orientation(img, orientation):
    """Turn a decoded array upright for its EXIF orientation."""
    op = _UPRIGHT.get(orientation)
    return img if op is None else np.ascontiguousarray(op(img))


def to_uint8(img):
    """Bring a 16-bit or float image to 8 bits (16-bit keeps its top byte, as OpenCV's colour load does)."""
    if img.dtype == np.uint8:
        return img
    if img.dtype == np.uint16:
        return (img >> 8).astype(np.uint8)
    return np.clip(np.rint(img * 255.0 if img.dtype.kind == "f" else img), 0, 255).astype(np.uint8)


def _to_channels(img, channels):
    """Convert an OpenCV array (BGR, BGRA or gray; any depth) to RGB (3), gray (1) or RGB(A)/gray as stored (-1)."""
    img = to_uint8(img)
    if img.ndim == 2:
        img = img[:, :, None]
    if img.shape[2] == 2:  # gray + alpha: keep the gray plane
        img = img[:, :, :1]
    if img.shape[2] == 1:
        return cv2.cvtColor(img, cv2.COLOR_GRAY2RGB) if channels == 3 else img
    if channels == 1:
        return cv2.cvtColor(img[:, :, :3], cv2.COLOR_BGR2GRAY)[:, :, None]
    if img.shape[2] == 4:
        return cv2.cvtColor(img, cv2.COLOR_BGRA2RGB if channels == 3 else cv2.COLOR_BGRA2RGBA)
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


class DecodeError(ValueError):
    """The bytes are not an image that decodes (a bad record, not a mistake in the flags); str() is the reason."""


# We check the size ourselves (header_size); Pillow's own warning for the EXIF/size reads would only repeat it.
warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _jpeg_header(data):
    """(height, width, colorspace) from a JPEG's SOF marker, or None when libjpeg-turbo cannot read the header."""
    if not data.startswith(JPEG_MAGIC):
        return None
    try:
        h, w, colorspace, _ = simplejpeg.decode_jpeg_header(data)
    except ValueError:
        return None
    return h, w, colorspace


def jpeg_size(data):
    """(height, width) of a JPEG as stored (before EXIF orientation), or None if libjpeg-turbo cannot read it."""
    header = _jpeg_header(data)
    return None if header is None or header[2] in ("CMYK", "YCCK") else header[:2]


def header_size(data):
    """(height, width) that an image's header claims, read without decoding pixels; None when no header reads."""
    header = _jpeg_header(data)
    if header is not None:
        return header[:2]
    if data.startswith(PNG_MAGIC) and data[12:16] == b"IHDR":  # IHDR is always first: width, height as big-endian u32
        return int.from_bytes(data[20:24], "big"), int.from_bytes(data[16:20], "big")
    try:  # any other format: Pillow's open() reads only the header
        w, h = Image.open(io.BytesIO(data)).size
    except Image.DecompressionBombError as err:  # Pillow refuses to even open it: as big as it gets
        raise DecodeError(f"too large to decode ({err})") from None
    except Exception:  # not a format Pillow knows: OpenCV may still read it
        return None
    return h, w


def check_size(data, max_pixels=MAX_IMAGE_PIXELS):
    """Raise DecodeError when the bytes are empty, or their header claims more than max_pixels (0: no limit)."""
    if not len(data):
        raise DecodeError("empty (0 bytes), not an image")
    size = header_size(data) if max_pixels and max_pixels > 0 else None
    if size is not None and size[0] * size[1] > max_pixels:
        raise DecodeError(
            f"header claims {size[1]}x{size[0]} = {size[0] * size[1]:,} pixels in {len(data):,} bytes, "
            f"over --max-image-pixels {max_pixels:,}; not decoded"
        )


def decode(data, channels=3, min_short=0, max_pixels=MAX_IMAGE_PIXELS):
    """Decode image bytes to uint8 HxWxC (RGB for 3, gray for 1, as stored for -1); returns (array, full_hw).

    min_short > 0 lets a JPEG be decoded at 1/2, 1/4 or 1/8 scale while its short side stays >= min_short;
    full_hw is the upright size at full scale, so callers compute target sizes exactly as from a full decode.
    Raises DecodeError, whose text says why, when the bytes are not a decodable image or claim more than
    max_pixels pixels (0: no limit); that is checked from the header, before any pixel is decoded.
    """
    check_size(data, max_pixels)
    size = jpeg_size(data) if channels in (1, 3) else None
    if size is None:
        return decode_cv2(data, channels)
    h, w = size
    k = next((k for k in _FAST_SCALES if min_short and min(h, w) // k >= min_short), 1)
    try:
        img = simplejpeg.decode_jpeg(
            data,
            "GRAY" if channels == 1 else "RGB",
            min_height=-(-h // k),
            min_width=-(-w // k),
        )
    except ValueError as err:
        # libjpeg-turbo read the header, so the scan data is damaged (truncated, corrupt). OpenCV would decode
        # what it can, but print libjpeg's "Corrupt JPEG data" to stderr from C, where no caller can catch it:
        # the message is the reason the image is skipped instead.
        raise DecodeError(f"damaged JPEG, does not decode: {str(err).strip() or type(err).__name__}") from None
    orientation = _orientation(data)
    if orientation in (5, 6, 7, 8):
        h, w = w, h
    return _apply_orientation(img, orientation), (h, w)


def _what_it_is(data):
    """A few words on bytes that OpenCV could not decode: their format by magic number, or their first bytes."""
    for magic, name in ((JPEG_MAGIC, "JPEG"), (PNG_MAGIC, "PNG"), (b"GIF8", "GIF"), (b"RIFF", "RIFF/WebP")):
        if data.startswith(magic):
            return f"damaged or unsupported {name}"
    if data[:2] == b"BM" or data[:4] in (b"II*\0", b"MM\0*"):
        return "damaged or unsupported BMP/TIFF"
    return f"not an image (starts with {bytes(data[:12])!r})"


def decode_cv2(data, channels=3):
    """Decode any format OpenCV reads (applies EXIF orientation); returns (array, full_hw) like decode()."""
    if not len(data):
        raise DecodeError("empty (0 bytes), not an image")
    try:
        img = cv2.imdecode(np.frombuffer(data, np.uint8), _CV2_FLAGS[channels])
    except cv2.error as err:  # OpenCV asserts on some inputs instead of returning None
        raise DecodeError(f"does not decode: {str(err).strip().splitlines()[-1]}") from None
    if img is None or img.size == 0:
        raise DecodeError(f"{_what_it_is(data)}; does not decode")
    img = _to_channels(img, channels)
    return img, img.shape[:2]


def decode_to_rgb(data):
    """Decode image bytes (JPEG, PNG, ...; CMYK, gray, 16-bit, alpha) to an HxWx3 uint8 RGB array."""
    return decode(data, 3)[0]


def short_side_size(h, w, size):
    """(height, width) after resizing the short side to size, with MXNet im2rec's integer rounding."""
    if h > w:
        return max(1, h * size // w), size
    return size, max(1, w * size // h)


def center_square(img):
    """The centred square of side min(H, W) (MXNet im2rec's --center-crop)."""
    h, w = img.shape[:2]
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    return img[top : top + side, left : left + side]


def resize(img, hw):
    """Bilinear resize (OpenCV INTER_LINEAR, as MXNet im2rec) to (height, width), keeping HxWxC."""
    if img.shape[:2] == tuple(hw):
        return img
    out = cv2.resize(np.ascontiguousarray(img), (hw[1], hw[0]), interpolation=cv2.INTER_LINEAR)
    return out[:, :, None] if out.ndim == 2 else out


def encode(img, fmt=".jpg", quality=95):
    """Encode HxWxC uint8 (RGB, RGBA or gray) as '.jpg' (quality 1-100) or '.png' (compression 0-9) bytes."""
    if fmt == ".jpg":
        # OpenCV's encoder, as MXNet's pack_img: the same quantisation and 4:2:0 layout give the same bytes
        params, img = [cv2.IMWRITE_JPEG_QUALITY, int(quality)], img[:, :, :3]
    elif fmt == ".png":
        params = [cv2.IMWRITE_PNG_COMPRESSION, min(max(int(quality), 0), 9)]
    else:
        raise ValueError(f"unknown image encoding {fmt!r}; valid values: .jpg, .png")
    code = {3: cv2.COLOR_RGB2BGR, 4: cv2.COLOR_RGBA2BGRA}.get(img.shape[2])
    bgr = cv2.cvtColor(img, code) if code is not None else img
    ok, buf = cv2.imencode(fmt, bgr, params)
    if not ok:
        raise ValueError(f"OpenCV could not encode a {img.shape} image as {fmt}")
    return buf.tobytes()
