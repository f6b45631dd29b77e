"""Data: MXNet's data flags, the RecordIO / folder / synthetic iterators, and device-side augmentation.

Path of a batch (each step visible here; the sources of bytes and labels are in common/sources.py):
  epoch order (seed + epoch, this worker's part) -> batches of record indices
  -> worker threads: read bytes (mmap) -> decode -> crop/resize -> mirror, into one uint8 NHWC array
  -> torch uint8 NHWC tensor (pinned when a GPU is used) -> DeviceTransform on the device:
     float, photometric jitter, rotate/shear, (x - mean) / std, channels_last NCHW.
The DALI backend (common/dali.py) replaces the worker threads when installed; the rest is shared.
"""

import queue
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch

from common import autoaug, dali
from common.augment import DeviceTransform, Geometry
from common.options import Augmentation
from common.sources import FolderSource, open_source
from common.util import UserError, choice_error, parse_shape

# ---------------------------------------------------------------- epoch order


def epoch_batches(num, batch_size, *, shuffle, seed, epoch, part_index=0, num_parts=1, reps=1):
    """Split indices 0..num-1 into this part's batches for one epoch.

    With shuffle (training), the whole dataset is permuted from (seed, epoch), then part k takes every
    num_parts-th index, so each record is seen exactly once per epoch over all parts, and every part gets the same
    number of batches (uneven parts hung MXNet's dist_sync at epoch end), none empty: a part one record short
    moves one record from its second-to-last batch into the last; at batch size 1 it repeats one record instead.
    Without shuffle (validation) the parts are not kept in step, so no record is ever repeated.
    reps > 1 (--ra-reps, repeated augmentation): each index of the permutation stands reps times in a row before
    the parts are dealt, so each record is seen reps times per epoch, its copies go to reps different parts when
    there are that many (else as evenly as dealing allows, neighbours in one batch), and the epoch is reps times
    longer; the copies differ because each part and batch draws its own augmentation.
    """
    order = np.random.default_rng([seed, epoch]).permutation(num) if shuffle else np.arange(num)
    order = np.repeat(order, reps)  # [a, a, b, b, ...]: dealt round-robin, a's copies land on different parts
    part = order[part_index::num_parts]
    per_part = -(-len(order) // num_parts) if shuffle else len(part)
    nbatch = max(1, -(-per_part // batch_size))
    batches = [part[i * batch_size : (i + 1) * batch_size] for i in range(nbatch)]
    if len(batches[-1]) == 0 and len(batches) > 1:
        # this part is one record short of the longest: move one record so the last batch is not empty
        if len(batches[-2]) > 1:
            batches[-1], batches[-2] = batches[-2][-1:], batches[-2][:-1]
        else:  # batch size 1: repeat one record rather than stall the other workers
            batches[-1] = batches[-2]
    return batches


# ---------------------------------------------------------------- iterators


class ImageIter:
    """Batches of (uint8 NHWC tensor, float32 label tensor) from a source, decoded by a pool of threads."""

    def __init__(
        self,
        source,
        batch_size,
        data_shape,
        geometry,
        *,
        shuffle,
        seed=0,
        part_index=0,
        num_parts=1,
        nthreads=4,
        pin_memory=False,
        reps=1,
    ):
        self.source, self.batch_size, self.data_shape, self.geometry = source, batch_size, data_shape, geometry
        self.shuffle, self.seed, self.part_index, self.num_parts = shuffle, seed, part_index, num_parts
        self.reps = reps  # --ra-reps: each record this many times per epoch (epoch_batches)
        self.nthreads, self.pin_memory = max(1, nthreads), pin_memory
        self.epoch, self.bad_images, self.bad_examples = 0, 0, []
        self.stage_seconds = {}  # {stage: seconds summed over the threads}, for --test-io
        self.num = len(source) if source is not None else 0
        self._lock = threading.Lock()

    @property
    def skipped_no_image(self):
        """Records without an image (skipped when the source was opened)."""
        return self.source.skipped_no_image

    def set_epoch(self, epoch):
        """Select the epoch: reshuffles the whole dataset and reseeds augmentation from seed + epoch."""
        self.epoch = epoch

    def batches(self):
        """This worker's record indices for the current epoch, one array per batch."""
        return epoch_batches(
            self.num,
            self.batch_size,
            shuffle=self.shuffle,
            seed=self.seed,
            epoch=self.epoch,
            part_index=self.part_index,
            num_parts=self.num_parts,
            reps=self.reps,
        )

    def __len__(self):
        return len(self.batches())

    def load_batch(self, b, indices):
        """Decode and augment batch number b (record indices) into (uint8 NHWC, labels) tensors."""
        rng = np.random.default_rng([self.seed, self.epoch, self.part_index, b])
        recipe, aug_rng = self.geometry.recipe, self._recipe_rng(b)
        c, h, w = self.data_shape
        data = np.empty((len(indices), h, w, c), np.uint8)
        keep, why, seconds = [], [], {"decode+crop/resize": 0.0}
        for i in indices:
            tic = time.perf_counter()
            ok = self.geometry.load(self.source.read(i), rng, data[len(keep)], why)
            seconds["decode+crop/resize"] += time.perf_counter() - tic
            if not ok:
                # a 30-hour run never dies on one bad JPEG: skip it and count it, with where and why
                with self._lock:
                    self.bad_images += 1
                    if len(self.bad_examples) < 10:
                        self.bad_examples.append(f"{self.source.where(i)}: {why[-1] if why else 'does not decode'}")
                continue
            if recipe is not None:  # --auto-augment, --random-erase: now, while the image is in the cache
                recipe.apply(data[len(keep) : len(keep) + 1], aug_rng, seconds)
            keep.append(i)
        self._count_stages(seconds)
        data = torch.from_numpy(data[: len(keep)])
        label = torch.from_numpy(self.source.labels[np.asarray(keep, dtype=np.int64)])
        if self.pin_memory:
            data, label = data.pin_memory(), label.pin_memory()
        return data, label

    def _recipe_rng(self, b):
        """The generator of batch b's --auto-augment and --random-erase draws: a stream of their own, (seed, epoch,
        part, batch, 1), so the crops stay those of a run without them and a resumed run draws what an uninterrupted
        one would."""
        return np.random.default_rng([self.seed, self.epoch, self.part_index, b, 1])

    def _count_stages(self, seconds):
        """Add a batch's {stage: seconds} to the totals --test-io reports."""
        with self._lock:
            for name, t in seconds.items():
                self.stage_seconds[name] = self.stage_seconds.get(name, 0.0) + t

    def __iter__(self):
        batches = self.batches()
        with ThreadPoolExecutor(self.nthreads, thread_name_prefix="decode") as pool:
            pending = queue.SimpleQueue()
            ahead = self.nthreads + 1
            for b in range(min(ahead, len(batches))):
                pending.put(pool.submit(self.load_batch, b, batches[b]))
            for b in range(len(batches)):
                batch = pending.get().result()
                if b + ahead < len(batches):
                    pending.put(pool.submit(self.load_batch, b + ahead, batches[b + ahead]))
                yield batch


class ArrayIter(ImageIter):
    """Batches from in-memory uint8 NHWC images and labels (MNIST), with the same epoch order as the rest."""

    def __init__(self, images, labels, batch_size, *, shuffle, seed=0, part_index=0, num_parts=1, reps=1):
        super().__init__(
            None,
            batch_size,
            (images.shape[3], images.shape[1], images.shape[2]),
            None,
            shuffle=shuffle,
            seed=seed,
            part_index=part_index,
            num_parts=num_parts,
            reps=reps,
        )
        self.images, self.labels = torch.from_numpy(np.ascontiguousarray(images)), torch.from_numpy(labels)
        self.num = len(images)

    @property
    def skipped_no_image(self):
        """In-memory arrays have no header records."""
        return 0

    def __iter__(self):
        for idx in self.batches():
            idx = torch.from_numpy(idx)
            yield self.images[idx], self.labels[idx]


class ShiftedArrayIter(ArrayIter):
    """--pad-size P on in-memory images, as MXNet's pad-then-random-crop: each moves by up to P pixels each way."""

    def __init__(self, images, labels, batch_size, pad, fill, aug=None, **common):
        super().__init__(images, labels, batch_size, shuffle=True, **common)
        self.pad, self.fill = pad, fill
        # aug: the flags' Augmentation, for --auto-augment / --random-erase (per image after the shift)
        self.recipe = autoaug.Recipe.of(aug, self.data_shape, train=True) if aug is not None else None

    def __iter__(self):
        gen = torch.Generator().manual_seed(self.seed * 1000003 + self.epoch * 101 + self.part_index)  # resumable
        for b, (x, y) in enumerate(super().__iter__()):  # x: (N, H, W, C) uint8, a copy of the images
            tic = time.perf_counter()
            if self.pad:
                n, h, w, c, p = *x.shape, self.pad
                padded = torch.full((n, h + 2 * p, w + 2 * p, c), self.fill, dtype=x.dtype)
                padded[:, p : p + h, p : p + w] = x
                dy, dx = torch.randint(0, 2 * p + 1, (2, n, 1), generator=gen)
                rows, cols = dy + torch.arange(h), dx + torch.arange(w)  # (N, H), (N, W): each image's window
                x = padded[torch.arange(n)[:, None, None], rows[:, :, None], cols[:, None, :]]
            seconds = {"shift": time.perf_counter() - tic}
            if self.recipe is not None:  # --auto-augment, --random-erase, in place (x.numpy() shares x's memory)
                self.recipe.apply(x.numpy(), self._recipe_rng(b), seconds)
            self._count_stages(seconds)
            yield x, y


class SyntheticIter:
    """`--benchmark 1`: the same random uint8 batch every step, so the network alone is measured."""

    def __init__(self, batch_size, data_shape, num_classes, num_batches, seed=0):
        g = torch.Generator().manual_seed(seed)
        c, h, w = data_shape
        self.data = torch.randint(0, 256, (batch_size, h, w, c), dtype=torch.uint8, generator=g)
        self.label = torch.randint(0, num_classes, (batch_size,), generator=g).float()
        if torch.cuda.is_available():  # pinned, so that the copy to the GPU does not block, as a real batch's
            self.data, self.label = self.data.pin_memory(), self.label.pin_memory()
        self.num_batches, self.batch_size = num_batches, batch_size
        self.bad_images = self.skipped_no_image = 0

    def set_epoch(self, epoch):
        """Synthetic data is the same every epoch."""

    def __len__(self):
        return self.num_batches

    def __iter__(self):
        for _ in range(self.num_batches):
            yield self.data, self.label


# ---------------------------------------------------------------- entry points


def _check_labels(source, num_classes):
    """A class label that is no whole number, or outside [0, num_classes), is an error before training, naming it."""
    labels = source.labels
    if labels.ndim == 2:  # multi-label records train on their first label, a class number
        labels = labels[:, 0]
    if labels.ndim != 1 or not len(labels):
        return
    odd = np.flatnonzero(~np.isfinite(labels) | (labels != np.round(labels)))
    if len(odd):
        i = int(odd[0])
        raise UserError(
            f"label {labels[i]:g} of {source.where(i)} is not a class number (a whole number >= 0; {len(odd)} such "
            "records); the loss takes the first label of a record as its class: fix the .lst and pack it again"
        )
    if num_classes is None:
        return
    bad = np.flatnonzero((labels < 0) | (labels >= num_classes))
    if len(bad):
        i = int(bad[0])
        raise UserError(
            f"label {labels[i]:g} of {source.where(i)} is outside [0, {num_classes}) "
            f"({len(bad)} such records); fix the data or raise --num-classes"
        )


def open_checked(path, idx="", num_classes=None):
    """open_source, refusing data with no image record and labels that are no class numbers (naming the record)."""
    source = open_source(path, idx)
    if not len(source):  # an empty .rec or .idx, or only header records: nothing to train or validate on
        raise UserError(
            f"{path} holds no image ({source.skipped_no_image} records without one); "
            "pack images into it with tools/im2rec.py, or pick another file"
        )
    _check_labels(source, num_classes)
    return source


def data_classes(source):
    """(number of classes, where it comes from) of a checked source: its class names, else the largest label + 1."""
    if getattr(source, "classes", None):
        return len(source.classes), "its class folders" if isinstance(source, FolderSource) else "its .classes file"
    labels = source.labels[:, 0] if source.labels.ndim == 2 else source.labels
    return int(labels.max()) + 1, f"its largest label {int(labels.max())} + 1"


def resolve_num_classes(args, default):
    """args.num_classes: --num-classes when given, else the training data's count (default without data, e.g.
    --benchmark's synthetic batches); one line on stderr says which, or that the flag far exceeds the data's."""
    if args.benchmark or not args.data_train:
        args.num_classes = args.num_classes or default
        return args.num_classes
    source = open_checked(args.data_train, args.data_train_idx)
    count, how = data_classes(source)
    given = args.num_classes
    if given is None:
        args.num_classes = count
        print(f"--num-classes not given: {count} classes, from {how} ({args.data_train})", file=sys.stderr)
    elif given - count > max(2, count / 10):  # a few spare outputs are a choice; hundreds are the 1000 default
        print(
            f"--num-classes {given} but {args.data_train} has {count} classes ({how}): {given - count} outputs "
            "never see a label; drop --num-classes to take the data's count",
            file=sys.stderr,
        )
    _check_labels(source, args.num_classes)  # a negative label, or one past --num-classes, before the network
    if (getattr(args, "top_k", 0) or 0) > args.num_classes:
        raise UserError(f"--top-k {args.top_k} is more than the {args.num_classes} classes (give at most that)")
    return args.num_classes


def _make_iter(args, aug, path, idx, shape, train, rank, nworker, seed, backend):
    source = open_checked(path, idx, getattr(args, "num_classes", None))
    geometry = Geometry(aug, shape, train)
    common = dict(shuffle=train, seed=seed, part_index=rank, num_parts=nworker, nthreads=args.data_nthreads)
    common["reps"] = getattr(args, "ra_reps", 1) if train else 1  # repeated augmentation trains, never validates
    if backend == "dali" and train and dali.supports(geometry):
        # DALI decodes; a one-thread ImageIter over the same records gives its batch order and redoes a failed batch
        fallback = ImageIter(source, args.batch_size, shape, geometry, **dict(common, nthreads=1))
        return dali.DaliIter(fallback, nthreads=args.data_nthreads)
    return ImageIter(source, args.batch_size, shape, geometry, pin_memory=torch.cuda.is_available(), **common)


def choose_backend(name):
    """Resolve --data-backend: auto and python take the thread pool; dali needs NVIDIA DALI installed.

    The thread pool is the default because it measured faster on the CPU (benchmarks/bench_io.py, 2 cores:
    about 2,400 random-resized-crop 224 samples/s against DALI's 1,000 to 1,350).
    """
    if name in ("auto", "python"):
        return "python"
    if name == "dali":
        if dali.available():
            return "dali"
        raise UserError(
            "--data-backend dali: NVIDIA DALI is not installed (pip install nvidia-dali-cuda130), "
            "or use --data-backend python"
        )
    raise choice_error("--data-backend", name, ["auto", "dali", "python"])


def get_rec_iter(args, kv=None):
    """Return (train, val) iterators for the flags; each worker of a distributed job reads its own part."""
    shape = parse_shape(args.image_shape)
    rank, nworker = (kv.rank, kv.num_workers) if kv is not None else (0, 1)
    seed = args.shuffle_seed if getattr(args, "shuffle_seed", None) is not None else getattr(args, "seed", 0) or 0
    if args.benchmark:
        per_worker = (args.num_examples or 50 * args.batch_size * nworker) // nworker
        nbatch = max(1, per_worker // args.batch_size)
        return SyntheticIter(args.batch_size, shape, args.num_classes or 1000, nbatch, seed), None
    if not args.data_train:
        raise UserError("no training data: pass --data-train FILE.rec (or a class folder), or --benchmark 1")
    backend = choose_backend(getattr(args, "data_backend", "auto"))
    aug = Augmentation.of(args)
    train = _make_iter(args, aug, args.data_train, args.data_train_idx, shape, True, rank, nworker, seed, backend)
    val = None
    if args.data_val:
        val = _make_iter(args, aug, args.data_val, args.data_val_idx, shape, False, rank, nworker, seed, "python")
    return train, val


def skipped_note(it, bad_before=0, headers=True):
    """'' or what the iterator skipped: images that failed to decode since bad_before (with where and why), and
    (headers) the records that hold no image."""
    bad = getattr(it, "bad_images", 0) - bad_before
    parts = []
    if bad:
        first = "; ".join(map(str, getattr(it, "bad_examples", [])[:3]))
        parts.append(f"{bad} images that do not decode" + (f" (first: {first})" if first else ""))
    empty = getattr(it, "skipped_no_image", 0) if headers else 0
    if empty:
        parts.append(f"{empty} records without an image")
    return ", ".join(parts)


def test_io(args, train, log=print, device="cpu"):
    """`--test-io 1`: run the input pipeline alone for one epoch and print MXNet's speed lines, then what each stage
    costs per batch (the device transform, which trains on `device`, timed on the first batch after the epoch)."""
    tic = start = time.time()
    cpu = time.process_time()  # every thread's: the figure that holds on a machine others share
    seen = window = 0
    first = None
    for i, (data, _label) in enumerate(train):
        first = data if first is None else first
        seen += len(data)
        window += len(data)
        if (i + 1) % args.disp_batches == 0:  # numbered from 0, as MXNet's --test-io numbers its batches
            log(f"Batch [{i}]\tSpeed: {window / (time.time() - tic):.2f} samples/sec")
            tic, window = time.time(), 0
    elapsed, cpu = time.time() - start, time.process_time() - cpu
    log(
        f"test-io: {seen} samples in {elapsed:.1f}s ({seen / max(elapsed, 1e-9):.2f} samples/sec), "
        f"{getattr(train, 'bad_images', 0)} undecodable, {getattr(train, 'skipped_no_image', 0)} without image"
    )
    log(f"test-io: {seen / max(cpu, 1e-9):.2f} samples per CPU-second ({cpu:.1f}s of CPU time, all threads)")
    note = skipped_note(train)
    if note:  # where and why, not only how many
        log(f"test-io: skipped {note}")
    _stage_lines(args, train, first, i + 1 if first is not None else 0, torch.device(device), log)
    return seen / max(elapsed, 1e-9)


def _stage_lines(args, train, batch, nbatch, device, log):
    """One line per stage: ms per batch and share; the worker stages' time is summed over the decode threads."""
    stages = dict(getattr(train, "stage_seconds", None) or {})
    if not stages or not nbatch:  # DALI's pipeline and --benchmark's batch have no stages to tell apart
        return
    ms = {name: 1000 * t / nbatch for name, t in stages.items()}
    tf = DeviceTransform(args, parse_shape(args.image_shape), True, device)
    runs = []
    for _ in range(3):  # the best of three: the first may pay for warm-up
        tic = time.perf_counter()
        tf(batch.to(device))
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        runs.append(time.perf_counter() - tic)
    ms[f"device transform ({device.type})"] = 1000 * min(runs)
    total = sum(ms.values())
    log("test-io: cost per batch by stage (a worker stage's time is summed over the threads that ran it)")
    for name, t in ms.items():
        log(f"test-io: stage {name}: {t:.2f} ms per batch ({t / total:.0%})")
