"""Augmentation: its flags and settings (Augmentation), the geometric part on the CPU workers (Geometry) and the
rest, batched, on the device (DeviceTransform).

Augmentation is built once from the parsed flags; its field defaults are the flags' defaults, declared only here
(common.data's Data group takes pad/fill/mean/std from it). Adding an augmentation: a field, then its use below.

Colour jitter, PCA lighting noise and rotate/shear run on whole uint8 batches after they reach the device
(DeviceTransform): one vectorised implementation that serves both decoder backends and costs nothing on a GPU.
Today's per-image policies (--auto-augment, --random-erase) run on the workers after the crop (common/autoaug.py):
their operations differ image by image, where a batched version measured ten times slower on the CPU.
"""

import math

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from common import autoaug, image
from common.options import Augmentation
from common.util import UserError, parse_floats

# ImageNet RGB covariance eigen-decomposition on the 0-255 scale (AlexNet's lighting noise)
PCA_EIGVAL = (55.46, 4.794, 1.148)
PCA_EIGVEC = ((-0.5675, 0.7192, 0.4009), (-0.5808, -0.0045, -0.8140), (-0.5836, -0.6948, 0.4203))
LUMA = (0.299, 0.587, 0.114)
TO_YIQ = ((0.299, 0.587, 0.114), (0.596, -0.274, -0.322), (0.211, -0.523, 0.312))


class Geometry:
    """What the workers do to one decoded image: crop window, resize, pad, mirror (MXNet's semantics)."""

    def __init__(self, settings, data_shape, train):
        a = Augmentation.of(settings)  # the parsed flags or their Augmentation
        self.channels, self.height, self.width = data_shape
        self.train = train
        self.rrc = train and bool(a.random_resized_crop)
        self.random_crop = train and bool(a.random_crop)
        self.mirror = train and bool(a.random_mirror)
        # --auto-augment, --random-erase: per image after the crop, by the caller (ImageIter.load_batch); None when off
        self.recipe = autoaug.Recipe.of(a, data_shape, train)
        self.pad = a.pad_size if train else 0
        self.fill = a.fill_value
        self.max_pixels = a.max_image_pixels
        self.area = (a.min_random_area, a.max_random_area)
        self.crop_size = (
            (a.min_crop_size, a.max_crop_size) if train and (a.min_crop_size, a.max_crop_size) != (-1, -1) else None
        )
        # MXNet draws scale and aspect ratio as min + u * (max - min): a reversed pair is the same range
        self.scale = tuple(sorted((a.min_random_scale, a.max_random_scale))) if train else (1, 1)
        hi, lo = a.max_random_aspect_ratio or 0, a.min_random_aspect_ratio
        self.ratio = tuple(sorted((lo, hi))) if lo is not None else (1 - hi, 1 + hi) if hi else (1.0, 1.0)
        if not train:
            self.ratio = (1.0, 1.0)
        self.resize = 0 if train else a.val_resize_size  # validation: the short side's size before the centre crop
        if a.val_resize_size and a.val_resize_size < max(self.height, self.width):
            raise UserError(
                f"--val-resize-size {a.val_resize_size}: smaller than the {self.height}x{self.width} crop of "
                f"--image-shape; give 0 (no resize) or an integer >= {max(self.height, self.width)}"
            )
        self._check(lo, hi)

    def _check(self, lo, hi):
        """UserError for ranges no image can be augmented with (MXNet aborted on a reversed area range)."""
        if not self.train:
            return
        if self.crop_size is not None and not 0 < self.crop_size[0] <= self.crop_size[1]:
            raise UserError(
                f"--min-crop-size {self.crop_size[0]} / --max-crop-size {self.crop_size[1]}: give both, "
                "0 < min <= max (pixels), or neither"
            )
        if not 0 < self.area[0] <= self.area[1] <= 1:
            raise UserError(
                f"--min-random-area {self.area[0]:g} / --max-random-area {self.area[1]:g}: "
                "give 0 < min <= max <= 1 (fractions of the image's area)"
            )
        if self.scale[0] <= 0:
            raise UserError(f"--min-random-scale / --max-random-scale {self.scale}: scales must be > 0")
        if self.ratio[0] <= 0 and lo is not None:
            raise UserError(f"--min-random-aspect-ratio {lo:g} / --max-random-aspect-ratio {hi:g}: ratios must be > 0")
        if self.ratio[0] <= 0:
            raise UserError(
                f"--max-random-aspect-ratio {hi:g}: without --min-random-aspect-ratio it is the "
                "deviation from 1 and must be < 1"
            )

    def load(self, buf, rng, out, why=None):
        """Decode `buf` and write its augmented (H, W, C) RGB uint8 into `out`; False if it does not decode.

        On False, the reason (DecodeError's text) is appended to the list `why` when one is given.
        """
        try:
            if self.rrc:
                img = self._rrc(buf, rng)
            else:
                img = self._scale_pad_crop(image.decode(buf, self.channels, max_pixels=self.max_pixels)[0], rng)
        except image.DecodeError as err:  # only the image's bytes: a flag's mistake must not pass for a bad image
            if why is not None:
                why.append(str(err))
            return False
        flip = self.mirror and rng.random() < 0.5
        dst = out if self.channels == 3 else out[:, :, 0]  # OpenCV drops the channel axis of 1-channel images
        # resize and flip straight into the batch buffer: no intermediate copies on the hot path
        if img.shape[:2] != dst.shape[:2]:
            cv2.resize(img, (self.width, self.height), dst=dst, interpolation=cv2.INTER_LINEAR)
            if flip:
                cv2.flip(dst, 1, dst=dst)
        elif flip:
            cv2.flip(np.ascontiguousarray(img), 1, dst=dst)
        else:
            dst[...] = img.reshape(dst.shape)
        return True

    def _rrc(self, buf, rng):
        """The random-resized-crop window of the image; a big window of a JPEG decodes at reduced DCT scale."""
        image.check_size(buf, self.max_pixels)  # before any decode, so a bomb is refused first
        size = image.jpeg_size(buf)
        window = self._rrc_window(*size, rng) if size else None
        shrink = min(window[2] / self.height, window[3] / self.width) if window else 1
        min_short = int(np.ceil(min(size) / shrink)) if shrink >= 2 else 0
        img, full = image.decode(buf, self.channels, min_short, max_pixels=0)  # size checked above
        if window is None:
            window = self._rrc_window(*full, rng)
        elif tuple(full) != tuple(size):  # EXIF rotated the image by 90 degrees: rotate the window with it
            window = (window[1], window[0], window[3], window[2])
        fy, fx = img.shape[0] / full[0], img.shape[1] / full[1]
        y, x, ch, cw = int(window[0] * fy), int(window[1] * fx), int(window[2] * fy), int(window[3] * fx)
        return img[y : y + max(1, ch), x : x + max(1, cw)]

    def _rrc_window(self, h, w, rng):
        """Inception-style window: area fraction and log-uniform aspect ratio, 10 tries, then the centre."""
        for _ in range(10):
            area = h * w * rng.uniform(*self.area)
            ratio = np.exp(rng.uniform(np.log(self.ratio[0]), np.log(self.ratio[1])))
            cw, ch = int(round(np.sqrt(area * ratio))), int(round(np.sqrt(area / ratio)))
            if 0 < cw <= w and 0 < ch <= h:
                return int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1)), ch, cw
        side = min(h, w)
        return (h - side) // 2, (w - side) // 2, side, side

    def _scale_pad_crop(self, img, rng):
        """MXNet's default augmenter: random scale and aspect, pad, then a random or centre crop."""
        if self.resize:
            img = self._resize_short(img)
        h, w = img.shape[:2]
        s = rng.uniform(*self.scale) if self.scale != (1, 1) else 1.0
        r = rng.uniform(*self.ratio) if self.ratio != (1.0, 1.0) else 1.0
        if s != 1.0 or r != 1.0:
            w, h = max(1, int(round(w * s * np.sqrt(r)))), max(1, int(round(h * s / np.sqrt(r))))
            img = cv2.resize(img, (w, h), interpolation=cv2.INTER_LINEAR)
        if self.pad:
            img = cv2.copyMakeBorder(
                img, self.pad, self.pad, self.pad, self.pad, cv2.BORDER_CONSTANT, value=(self.fill,) * 3
            )
        if self.crop_size is not None:  # MXNet's min/max_crop_size: a random square, resized by load() afterwards
            side = int(rng.integers(self.crop_size[0], self.crop_size[1] + 1))
            return self._crop(img, side, side, rng)
        return self._crop(img, self.height, self.width, rng)

    def _resize_short(self, img):
        """img with its shorter side resized to self.resize, the longer one in proportion (rounded down, as
        torchvision's Resize); shrinking averages over the pixels (INTER_AREA), as an antialiased resize does."""
        h, w = img.shape[:2]
        if min(h, w) == self.resize:
            return img
        s = self.resize
        size = (s, max(s, w * s // h)) if h <= w else (max(s, h * s // w), s)  # (height, width)
        area = s < min(h, w)
        out = cv2.resize(img, size[::-1], interpolation=cv2.INTER_AREA if area else cv2.INTER_LINEAR)
        return out.reshape(*size, *img.shape[2:])  # OpenCV drops the channel axis of 1-channel images

    def _crop(self, img, ch, cw, rng):
        """A ch x cw window of img, random with --random-crop, else centred; an image smaller is scaled up first."""
        h, w = img.shape[:2]
        if h < ch or w < cw:  # smaller than the crop: scale up to fit (MXNet aborted here)
            k = max(ch / h, cw / w)
            w, h = max(cw, int(np.ceil(w * k))), max(ch, int(np.ceil(h * k)))
            img = cv2.resize(img, (w, h), interpolation=cv2.INTER_LINEAR)
        if self.random_crop:
            y, x = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
        else:
            y, x = (h - ch) // 2, (w - cw) // 2
        return img[y : y + ch, x : x + cw]


class DeviceTransform:
    """uint8 NHWC batch on the device -> normalised float NCHW (channels_last), with training jitter."""

    def __init__(self, settings, data_shape, train, device, channels_last=True, seed=0, part=0):
        a = Augmentation.of(settings)  # the parsed flags or their Augmentation
        c = data_shape[0]
        mean = parse_floats(a.rgb_mean, "rgb-mean", (3, c))[:c]
        std = parse_floats(a.rgb_std, "rgb-std", (3, c))[:c]
        if 0 in std:
            raise UserError(f"--rgb-std {a.rgb_std}: a standard deviation of 0 divides by zero")
        self.mean = torch.tensor(mean, device=device).view(1, c, 1, 1)
        self.std = torch.tensor(std, device=device).view(1, c, 1, 1)
        self.device, self.train, self.channels_last, self.seed = torch.device(device), train, channels_last, seed
        self.part = part  # the worker's: its jitter differs from the others' (--ra-reps sends them copies of one image)
        self.brightness, self.contrast, self.saturation = a.brightness, a.contrast, a.saturation
        self.hue, self.sat_shift, self.light = a.max_random_h, a.max_random_s, a.max_random_l
        self.pca, self.rotate, self.shear = a.pca_noise, a.max_random_rotate_angle, a.max_random_shear_ratio
        self.fill = float(a.fill_value)
        self.colour = c == 3 and any(
            (self.brightness, self.contrast, self.saturation, self.hue, self.sat_shift, self.light, self.pca)
        )
        self.gen = torch.Generator().manual_seed(seed)
        # Constants live on the device from the start: a tensor built per batch from Python values would be a
        # blocking host-to-device copy, which on a GPU waits for all queued work and stalls the pipeline.
        self.luma = torch.tensor(LUMA, device=device).view(1, 3, 1, 1)
        self.pca_vec, self.pca_val = torch.tensor(PCA_EIGVEC, device=device), torch.tensor(PCA_EIGVAL, device=device)
        yiq = torch.tensor(TO_YIQ, dtype=torch.float64)
        self.to_yiq, self.from_yiq = yiq.float().to(device), torch.linalg.inv(yiq).float().to(device)

    def set_epoch(self, epoch):
        """Reseed the jitter from (seed, epoch, part), so a resumed run draws what an uninterrupted one would."""
        # torch's CPU generator keeps the seed's low 32 bits: an odd multiplier gives each part its own there
        self.gen.manual_seed((self.seed * 1000003 + epoch + self.part * 0x9E3779B1) % 2**64)  # part 0: as before

    def __call__(self, x):
        """x: (N, H, W, C) uint8 on the device -> (N, C, H, W) float32 normalised."""
        x = x.permute(0, 3, 1, 2).float()  # a view with channels_last strides: no copy yet
        if self.train and self.colour:
            x = self._colour(x)
        if self.train and (self.rotate or self.shear):
            x = self._warp(x)
        x = (x - self.mean) / self.std
        fmt = torch.channels_last if self.channels_last else torch.contiguous_format
        return x.contiguous(memory_format=fmt)

    def _draw(self, values):
        """Random values drawn on the CPU (the same stream on every device) -> the device, without blocking."""
        if self.device.type == "cuda":
            return values.pin_memory().to(self.device, non_blocking=True)
        return values.to(self.device)

    def _uniform(self, n, bound):
        return self._draw((torch.rand(n, generator=self.gen) * 2 - 1) * bound).view(n, 1, 1, 1)

    def _colour(self, x):
        """Brightness, contrast, saturation (MXNet's ColorJitter), HSL shifts and PCA noise; x in [0, 255]."""
        n, luma = x.shape[0], self.luma
        if self.brightness:
            x = x * (1 + self._uniform(n, self.brightness))
        if self.contrast:
            a = 1 + self._uniform(n, self.contrast)
            x = x * a + (x * luma).sum(1, keepdim=True).mean((2, 3), keepdim=True) * (1 - a)
        if self.saturation or self.sat_shift:
            a = 1 + self._uniform(n, self.saturation) + self._uniform(n, self.sat_shift / 255.0)
            x = x * a + (x * luma).sum(1, keepdim=True) * (1 - a)
        if self.hue:
            x = self._rotate_hue(x, self._uniform(n, self.hue * 2 * math.pi / 180.0).view(n))
        if self.light:
            x = x + self._uniform(n, self.light)
        if self.pca:
            alpha = self._draw(torch.randn(n, 3, generator=self.gen) * self.pca)
            x = x + ((alpha * self.pca_val) @ self.pca_vec.T).view(n, 3, 1, 1)
        return x.clamp(0, 255)

    def _rotate_hue(self, x, theta):
        """Rotate hue by theta radians per image through YIQ space (batched 3x3 matrices)."""
        c, s = torch.cos(theta), torch.sin(theta)
        rot = torch.zeros(len(theta), 3, 3, device=x.device)
        rot[:, 0, 0] = 1
        rot[:, 1, 1], rot[:, 1, 2], rot[:, 2, 1], rot[:, 2, 2] = c, -s, s, c
        m = self.from_yiq @ rot @ self.to_yiq  # (N, 3, 3)
        return torch.einsum("nij,njhw->nihw", m, x)

    def _warp(self, x):
        """Random rotation and shear about the centre; uncovered pixels take --fill-value."""
        n = x.shape[0]
        ang = self._uniform(n, self.rotate * math.pi / 180.0).view(n)
        sh = self._uniform(n, self.shear).view(n)
        c, s = torch.cos(ang), torch.sin(ang)
        theta = torch.stack(
            [
                torch.stack([c, -s + sh * c, torch.zeros_like(c)], 1),
                torch.stack([s, c + sh * s, torch.zeros_like(c)], 1),
            ],
            1,
        )
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        ones = torch.ones_like(x[:, :1])
        out = F.grid_sample(torch.cat([x, ones], 1), grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        return out[:, :-1] + (1 - out[:, -1:]) * self.fill
