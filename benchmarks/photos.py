"""Make a folder of ImageNet-like photos (about 500x375 JPEG) from the real photos bundled with scikit-image."""

import os

import cv2
import numpy as np

# bundled with scikit-image itself (no download): real colour photographs
PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "cat")


def make_photos(dst, count=400, classes=4, size=(500, 375), quality=90, seed=0):
    """Write `count` JPEGs of about `size` into dst/class_K/, each a different random crop/flip/scale of a photo."""
    import skimage.data

    rng = np.random.default_rng(seed)
    sources = [getattr(skimage.data, name)()[:, :, :3] for name in PHOTOS]
    for k in range(count):
        src = sources[k % len(sources)]
        h, w = src.shape[:2]
        scale = rng.uniform(0.6, 1.0)
        ch, cw = int(h * scale), int(w * scale)
        y, x = rng.integers(0, h - ch + 1), rng.integers(0, w - cw + 1)
        crop = src[y : y + ch, x : x + cw]
        if rng.random() < 0.5:
            crop = crop[:, ::-1]
        out_w, out_h = size if rng.random() < 0.75 else size[::-1]
        img = cv2.resize(np.ascontiguousarray(crop), (out_w, out_h), interpolation=cv2.INTER_AREA)
        folder = os.path.join(dst, f"class_{k % classes}")
        os.makedirs(folder, exist_ok=True)
        cv2.imwrite(os.path.join(folder, f"img_{k:05d}.jpg"), img[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, quality])
    return dst
