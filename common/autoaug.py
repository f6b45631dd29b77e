"""Today's per-image training augmentations after the crop: --auto-augment (RandAugment, TrivialAugment-wide, AugMix,
AutoAugment's ImageNet policy), then --random-erase; on the decode threads, into the uint8 batch, before the device.

What is torchvision's: the policies, their operations, magnitude bins and signs are read from torchvision's
`transforms.v2` classes (their tables, not copies) and drawn with the same distributions in the same order; the
point operations (brightness, posterize, solarize, invert) apply lookup tables that torchvision's own kernels compute
on the 256 values. What is not, and why:
- the draws come from the batch's generator, seeded by (seed, epoch, part, batch) like the crop's, not from torch's
  global one, which all decode threads share: so the same --seed gives the same images whatever the thread timing,
  and a resumed run sees what an uninterrupted one would.
- the kernels run on OpenCV (warpAffine, filter2D, LUT, transform) instead of torchvision's tensor kernels. Those
  cost 0.66 ms of CPU per TrivialAugment-wide draw on one 224x224 image (Sharpness 2.5 ms, each warp 0.4 ms,
  Equalize 0.5 ms), more than the decode and crop of the image itself (about 0.5 ms), so the pipeline would keep
  less than half its throughput; these cost 0.09 ms, and the pipeline keeps 0.81 of it with --random-erase 0.25
  too (benchmarks/bench_recipes_io.py prints all of these). tests/test_autoaug.py holds them to torchvision's
  results: within one grey level, the warps within their interpolation's rounding.
Where: per image on the decode threads, right after the image's crop (still in the cache), not batched on the
device. torchvision's kernels take one magnitude per call, so a batch would run them image by image anyway; a
batched warp with per-image matrices (grid_sample) cost 1.8 ms per image on the CPU against OpenCV's 0.14; and on a
CPU run the device transform shares the training thread, while the decode threads run beside it.
Interpolation is bilinear, as torchvision's classification references train these policies (the classes' default
is nearest); uncovered pixels are 0, the classes' default. Random erasing follows torchvision's RandomErasing
(scale 0.02-0.33 of the area, aspect 0.3-3.3, 10 tries) and fills with --rgb-mean, the pixel that normalises to
0: torchvision's references erase after normalising, with value 0.
"""

import functools
import math
import time

import cv2
import numpy as np

from common.options import Augmentation
from common.util import parse_floats

BINS = 31  # RandAugment's and TrivialAugment's magnitude bins (torchvision's num_magnitude_bins)
AUGMIX_BINS, AUGMIX_WIDTH = 10, 3  # AugMix's severity scale (torchvision's _PARAMETER_MAX) and chains


class Recipe:
    """--auto-augment then --random-erase on each image of a uint8 NHWC batch, in place (training only)."""

    def __init__(self, policy, magnitude, severity, erase, fill, data_shape):
        _, h, w = data_shape
        self.policy, self.magnitude, self.severity, self.erase_p = policy, magnitude, severity, erase
        self.fill = tuple(int(v) for v in fill)  # the colour of an erased rectangle
        self.space, self.policies = _tables(policy, h, w) if policy != "none" else ([], [])
        self.stages = (["auto-augment"] if policy != "none" else []) + (["random erase"] if erase else [])

    @classmethod
    def of(cls, settings, data_shape, train):
        """The recipe of the flags (an argparse namespace or Augmentation), or None when training asks for none."""
        a = Augmentation.of(settings)
        if not train or (a.auto_augment == "none" and not a.random_erase):
            return None
        c = data_shape[0]
        mean = parse_floats(a.rgb_mean, "rgb-mean", (3, c))[:c]
        fill = [min(255, max(0, round(m))) for m in mean]
        return cls(a.auto_augment, a.ra_magnitude, a.augmix_severity, a.random_erase, fill, data_shape)

    def apply(self, batch, rng, seconds):
        """Both stages on batch (N, H, W, C) uint8 numpy, in place; adds their time to seconds {stage: seconds}."""
        for name, stage in (("auto-augment", self.auto_augment), ("random erase", self.erase)):
            if name in self.stages:
                tic = time.perf_counter()
                stage(batch, rng)
                seconds[name] = seconds.get(name, 0.0) + time.perf_counter() - tic

    def auto_augment(self, batch, rng):
        """Apply the policy to each image of batch (N, H, W, C) uint8, drawing from rng."""
        if self.policy == "none":
            return
        draw = getattr(self, "_" + self.policy)
        for img in batch:
            out = draw(img, rng)
            if out is not img:
                img[...] = out

    def erase(self, batch, rng):
        """Random erasing: with probability P, a random rectangle of each image takes the mean colour."""
        if not self.erase_p:
            return
        for img in batch:
            h, w = img.shape[:2]
            if rng.random() >= self.erase_p:
                continue
            for _ in range(10):
                area = h * w * rng.uniform(0.02, 0.33)
                ratio = math.exp(rng.uniform(math.log(0.3), math.log(3.3)))
                eh, ew = int(round(math.sqrt(area * ratio))), int(round(math.sqrt(area / ratio)))
                if eh < h and ew < w:
                    y, x = int(rng.integers(0, h - eh + 1)), int(rng.integers(0, w - ew + 1))
                    cv2.rectangle(img, (x, y), (x + ew - 1, y + eh - 1), self.fill, -1)  # 8x numpy's fill
                    break

    # ---------------------------------------------------------------- the policies (torchvision's draws)

    def _op(self, img, entry, index, rng):
        """Apply one (name, magnitudes, signed) entry at magnitude bin `index` (a draw when callable)."""
        name, mags, signed = entry
        m = 0.0
        if mags is not None:
            m = mags[index(rng) if callable(index) else index]
            if signed and rng.random() <= 0.5:
                m = -m
        return KERNELS[name](img, m)

    def _ra(self, img, rng):
        """RandAugment: two operations, uniformly drawn, at --ra-magnitude with a random sign."""
        for _ in range(2):
            img = self._op(img, self.space[rng.integers(len(self.space))], self.magnitude, rng)
        return img

    def _ta_wide(self, img, rng):
        """TrivialAugment-wide: one operation at a uniformly drawn magnitude."""
        return self._op(img, self.space[rng.integers(len(self.space))], lambda r: r.integers(BINS), rng)

    def _imagenet(self, img, rng):
        """AutoAugment's ImageNet policy: one of its 25 sub-policies, each step applied with its probability."""
        for name, p, index in self.policies[rng.integers(len(self.policies))]:
            if rng.random() <= p:
                img = self._op(img, self.space[name], index, rng)
        return img

    def _augmix(self, img, rng):
        """AugMix: a Beta-weighted mix of the image and a Dirichlet-weighted mix of 3 chains of 1-3 operations."""
        m = rng.dirichlet([1.0, 1.0])
        weights = rng.dirichlet([1.0] * AUGMIX_WIDTH) * m[1]
        mix = img.astype(np.float32) * np.float32(m[0])
        for w in weights:
            aug = img
            for _ in range(int(rng.integers(1, 4))):
                aug = self._op(aug, self.space[rng.integers(len(self.space))], lambda r: r.integers(self.severity), rng)
            mix += np.float32(w) * aug
        return mix.astype(np.uint8)  # truncated, as torchvision's .to(uint8)


def _tables(policy, h, w):
    """(operation space, sub-policies) of a policy from torchvision's classes, magnitudes for an h x w image."""
    from torchvision.transforms import v2

    def space(cls, bins):
        out = []
        for name, (fn, signed) in cls._AUGMENTATION_SPACE.items():
            mags = fn(bins, h, w)
            out.append((name, None if mags is None else mags.tolist(), signed))
            if name in POINT_OPS:  # every table this policy can ask for, now
                for m in [0.0] if mags is None else mags.tolist():
                    for value in (m, -m) if signed else (m,):
                        _lut(name, value)
        return out

    if policy == "ra":
        return space(v2.RandAugment, BINS), []
    if policy == "ta_wide":
        return space(v2.TrivialAugmentWide, BINS), []
    if policy == "augmix":
        return space(v2.AugMix, AUGMIX_BINS), []
    if policy == "imagenet":  # AutoAugment's sub-policies index magnitudes on a 10-bin scale
        table = {entry[0]: entry for entry in space(v2.AutoAugment, 10)}
        return table, v2.AutoAugment(v2.AutoAugmentPolicy.IMAGENET)._policies
    raise ValueError(policy)  # the flag's type admits only the names above


# ---------------------------------------------------------------- kernels: HxWxC uint8 in, HxWxC uint8 out


def _cv(img):
    """The array OpenCV takes: it drops the channel axis of 1-channel images."""
    return img[:, :, 0] if img.shape[2] == 1 else img


def _affine(img, angle=0.0, translate=(0.0, 0.0), shear=(0.0, 0.0), corner=False):
    """torchvision's affine (its inverse matrix about the centre, or the top-left corner) as one OpenCV warp."""
    h, w = img.shape[:2]
    m = _matrix(h, w, angle, translate, shear, corner)
    out = cv2.warpAffine(
        _cv(img), m, (w, h), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_CONSTANT
    )
    return out.reshape(img.shape)


@functools.lru_cache(maxsize=4096)  # a policy has a few hundred (operation, magnitude) pairs
def _matrix(h, w, angle, translate, shear, corner):
    """OpenCV's inverse map (2x3, pixel indices) of torchvision's affine on an h x w image."""
    from torchvision.transforms.functional import _get_inverse_affine_matrix

    centre = [-w * 0.5, -h * 0.5] if corner else [0.0, 0.0]
    a, b, c, d, e, f = _get_inverse_affine_matrix(centre, angle, list(translate), 1.0, list(shear))
    # torchvision's matrix maps centre-relative coordinates (pixel j at j - (w-1)/2); OpenCV's maps pixel indices
    cx, cy = (w - 1) * 0.5, (h - 1) * 0.5
    return np.array([[a, b, c + cx - a * cx - b * cy], [d, e, f + cy - d * cx - e * cy]])


@functools.lru_cache(maxsize=4096)  # filled when a policy is built (_tables): no torch call on the decode threads
def _lut(name, m):
    """The 256-entry table of a point operation, computed by torchvision's kernel on the values 0..255."""
    import torch
    from torchvision.transforms.v2 import functional as F

    ramp = torch.arange(256, dtype=torch.uint8).view(1, 1, 256)
    ops = {
        "Brightness": lambda: F.adjust_brightness(ramp, 1.0 + m),
        "Posterize": lambda: F.posterize(ramp, int(m)),
        "Solarize": lambda: F.solarize(ramp, 255.0 * m),
        "Invert": lambda: F.invert(ramp),
    }
    return ops[name]().numpy().reshape(256).copy()


POINT_OPS = ("Brightness", "Posterize", "Solarize", "Invert")


def _point(name):
    return lambda img, m: cv2.LUT(_cv(img), _lut(name, m)).reshape(img.shape)


def _grey(img):
    """torchvision's grey level of an RGB uint8 image, floor(0.2989 R + 0.587 G + 0.114 B), as uint8 (H, W)."""
    return cv2.transform(img, np.array([[0.2989, 0.587, 0.114, -0.4999]]))  # rounding v - 0.4999 floors v


def _blend_lut(f, base):
    """Table of f * x + (1 - f) * base, clamped and truncated as torchvision's _blend on uint8 (float32)."""
    ramp = np.arange(256, dtype=np.float32)
    out = ramp * np.float32(f) + np.float32(base) * np.float32(1.0 - f)
    return np.clip(out, 0, 255).astype(np.uint8)


def _contrast(img, m):
    """Blend with the mean grey level (torchvision's adjust_contrast)."""
    if img.shape[2] == 3:  # OpenCV rounds the grey level where torchvision rounds it down: half a level less
        mean = cv2.mean(cv2.cvtColor(img, cv2.COLOR_RGB2GRAY))[0] - 0.5
    else:
        mean = cv2.mean(_cv(img))[0]
    return cv2.LUT(_cv(img), _blend_lut(1.0 + m, mean)).reshape(img.shape)


def _colour(img, m):
    """Blend with the grey image (torchvision's adjust_saturation; a grey image stays as it is)."""
    if img.shape[2] == 1:
        return img
    f = 1.0 + m
    grey = cv2.cvtColor(_grey(img), cv2.COLOR_GRAY2RGB)
    return cv2.addWeighted(img, f, grey, 1.0 - f, -0.4999)  # rounding v - 0.4999 truncates v, as torchvision


_SMOOTH = np.array([[1, 1, 1], [1, 5, 1], [1, 1, 1]], np.float32) / 13


def _sharpness(img, m):
    """Blend with the 3x3-smoothed image inside a one-pixel border (torchvision's adjust_sharpness)."""
    h, w = img.shape[:2]
    if h <= 2 or w <= 2:
        return img
    f = 1.0 + m
    src = _cv(img)
    smooth = cv2.filter2D(src, -1, _SMOOTH, borderType=cv2.BORDER_REPLICATE)  # rounded, as torchvision's
    out = cv2.addWeighted(src, f, smooth, 1.0 - f, -0.4999).reshape(img.shape)
    out[0], out[-1], out[:, 0], out[:, -1] = img[0], img[-1], img[:, 0], img[:, -1]
    return out


def _autocontrast(img, m):
    """Stretch each channel to 0..255 (torchvision's autocontrast, in its float32 arithmetic)."""
    c = img.shape[2]
    rows = img.reshape(img.shape[0], -1)  # min and max down the rows first: numpy reduces them 100x faster
    lo = rows.min(0).reshape(-1, c).min(0).astype(np.float32)
    hi = rows.max(0).reshape(-1, c).max(0).astype(np.float32)
    same = hi == lo
    scale = (hi - lo) * np.float32(1.0 / 255)
    lo[same], scale[same] = 0, 1
    ramp = np.arange(256, dtype=np.float32)[:, None]
    lut = np.clip((ramp - lo) / scale, 0, 255).astype(np.uint8)  # (256, C)
    return _per_channel_lut(img, lut)


def _equalize(img, m):
    """Histogram equalisation per channel with PIL's table, as torchvision's equalize."""
    c = img.shape[2]
    hist = np.stack([cv2.calcHist([img], [k], None, [256], [0, 256]).ravel() for k in range(c)]).astype(np.int64)
    last = 255 - np.argmax(hist[:, ::-1] > 0, axis=1)  # the last non-empty bin of each channel
    step = (img.shape[0] * img.shape[1] - hist[np.arange(c), last]) // 255
    cum = hist.cumsum(1)
    lut = np.zeros((c, 256), np.int64)
    lut[:, 1:] = (cum[:, :-1] + step[:, None] // 2) // np.maximum(step, 1)[:, None]
    lut = np.clip(lut, 0, 255).astype(np.uint8)
    lut[step == 0] = np.arange(256, dtype=np.uint8)  # a channel of one value stays as it is
    return _per_channel_lut(img, lut.T)


def _per_channel_lut(img, lut):
    """img through lut (256, C): one table per channel."""
    if img.shape[2] == 1:
        return cv2.LUT(_cv(img), lut[:, 0].copy()).reshape(img.shape)
    return cv2.LUT(img, np.ascontiguousarray(lut).reshape(256, 1, 3))


KERNELS = {
    "Identity": lambda img, m: img,
    "ShearX": lambda img, m: _affine(img, shear=(math.degrees(math.atan(m)), 0.0), corner=True),
    "ShearY": lambda img, m: _affine(img, shear=(0.0, math.degrees(math.atan(m))), corner=True),
    "TranslateX": lambda img, m: _affine(img, translate=(int(m), 0)),
    "TranslateY": lambda img, m: _affine(img, translate=(0, int(m))),
    "Rotate": lambda img, m: _affine(img, angle=-m),
    "Brightness": _point("Brightness"),
    "Color": _colour,
    "Contrast": _contrast,
    "Sharpness": _sharpness,
    "Posterize": _point("Posterize"),
    "Solarize": _point("Solarize"),
    "AutoContrast": _autocontrast,
    "Equalize": _equalize,
    "Invert": _point("Invert"),
}
