"""The DALI decoder backend: random-resized-crop training batches decoded by NVIDIA DALI's CPU pipeline.

DALI's `decoders.image_random_crop` decodes only the crop window of each JPEG (libjpeg-turbo scanline
cropping), about twice the throughput of a full decode on the same cores. DALI's own RecordIO reader only
shuffles within a buffer and repeats the same order each epoch, so the records are fed here through
`external_source` in the suite's global per-epoch order (common.data.epoch_batches); the pipeline is rebuilt
every epoch with a seed derived from (seed, epoch, part) so augmentation is reseeded too.
Opt-in (--data-backend dali) for training with --random-resized-crop on 3-channel data without --auto-augment or
--random-erase; everything else, and the default, is the thread backend, which measured faster on CPUs
(benchmarks/bench_io.py prints both).
"""

import importlib.util
import logging

import numpy as np
import torch


def available():
    """Whether NVIDIA DALI is installed here (it is optional: no wheels for macOS or Windows)."""
    return importlib.util.find_spec("nvidia") is not None and importlib.util.find_spec("nvidia.dali") is not None


def supports(geometry):
    """Whether this backend does what the flags ask (random-resized-crop training on RGB, no per-image recipe)."""
    if geometry.recipe is not None and geometry.rrc:
        # --auto-augment / --random-erase run on the thread backend: the same draws and kernels whatever the backend,
        # in parallel on its threads (after DALI's decode they would run one image at a time in the training thread;
        # DALI's own policies are other implementations, without AugMix), and the threads measured faster anyway
        logging.getLogger(__name__).info(
            "--data-backend dali: --auto-augment / --random-erase decode on the thread backend instead "
            "(common/dali.py says why)"
        )
        return False
    return geometry.rrc and geometry.channels == 3


class DaliIter:
    """The interface of common.data.ImageIter (set_epoch, len, iterate (uint8 NHWC, labels)), decoded by DALI."""

    def __init__(self, fallback, nthreads=4):
        # fallback: the thread backend (common.data.ImageIter, one thread) over the same source, with the same
        # batch size, geometry and part; it gives the batch order and redoes a batch DALI failed to decode.
        self.fallback = fallback
        self.source, self.batch_size = fallback.source, fallback.batch_size
        self.data_shape, self.geometry = fallback.data_shape, fallback.geometry
        self.seed, self.part_index, self.nthreads = fallback.seed, fallback.part_index, max(1, nthreads)

    @property
    def bad_images(self):
        """Images that did not decode (their batches were redone without them)."""
        return self.fallback.bad_images

    @property
    def skipped_no_image(self):
        """Records without an image (skipped when the source was opened)."""
        return self.source.skipped_no_image

    def set_epoch(self, epoch):
        """Select the epoch: global reshuffle and augmentation reseed from seed + epoch."""
        self.fallback.set_epoch(epoch)

    def __len__(self):
        return len(self.fallback)

    def _pipeline(self, batches):
        """A pipeline fed with `batches` (lists of record indices) in order."""
        from nvidia.dali import fn, types  # imported when a pipeline is built: it costs 0.3 s
        from nvidia.dali.pipeline import Pipeline

        _, h, w = self.data_shape
        feed = iter(batches)

        def next_batch():
            idx = next(feed)
            encoded = [np.frombuffer(self.source.read(i), np.uint8) for i in idx]
            return encoded, [np.atleast_1d(self.source.labels[i]).astype(np.float32) for i in idx]

        epoch = self.fallback.epoch
        pipe = Pipeline(
            batch_size=self.batch_size,
            num_threads=self.nthreads,
            device_id=None,
            seed=(self.seed * 7919 + epoch * 104729 + self.part_index) % (2**31),
            prefetch_queue_depth=2,
        )
        with pipe:
            jpegs, labels = fn.external_source(source=next_batch, num_outputs=2, batch=True)
            images = fn.decoders.image_random_crop(
                jpegs,
                device="cpu",
                output_type=types.RGB,
                random_area=list(self.geometry.area),
                random_aspect_ratio=list(self.geometry.ratio),
                num_attempts=10,
            )
            images = fn.resize(images, resize_x=w, resize_y=h, interp_type=types.INTERP_LINEAR, antialias=False)
            if self.geometry.mirror:
                images = fn.flip(images, horizontal=fn.random.coin_flip(probability=0.5))
            pipe.set_outputs(images, labels)
        pipe.build()
        return pipe

    def __iter__(self):
        batches = self.fallback.batches()
        start = 0
        while start < len(batches):
            pipe = self._pipeline(batches[start:])
            for b in range(start, len(batches)):
                try:
                    images, labels = pipe.run()
                except RuntimeError:  # an image DALI cannot decode: redo this batch on threads, restart after it
                    yield self.fallback.load_batch(b, batches[b])
                    start = b + 1
                    break
                label = torch.from_numpy(labels.as_array())
                yield torch.from_numpy(images.as_array()), label[:, 0] if label.shape[1] == 1 else label
            else:
                start = len(batches)
            del pipe
