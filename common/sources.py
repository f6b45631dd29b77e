"""Record sources: where a batch's bytes and labels come from (.rec files, or folders of class subfolders).

A source has every label in memory from the start (`labels`, float32: one per record, or one row per record for
multi-label data) and reads one record's encoded image bytes on demand (`read(i)`), so any worker thread or
process can fetch any record in any order; `where(i)` names the record in error messages. `classes` holds the
class names by label, or None: a folder source's subfolders, or the lines of X.classes beside X.rec (written by
`im2rec --list --recursive`; one name a line, a plain file that MXNet ignores).
"""

import os

import numpy as np

from common import recordio
from common.util import UserError, atomic_write, read_lines

IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
CLASSES_EXT = ".classes"  # X.classes beside X.lst / X.rec: the class names by label


def read_classes(path):
    """The class names of a .classes file, one a line (blank lines at the end ignored)."""
    lines = read_lines(path, "class names")
    while lines and not lines[-1].strip():
        lines.pop()
    return [line.strip() for line in lines]


def write_classes(path, names):
    """Write class names, one a line, atomically."""
    atomic_write(path, "".join(f"{n}\n" for n in names), mode="w")


def check_class_names(path, names, max_label):
    """UserError, naming the file, unless the names cover every label up to max_label."""
    if max_label >= len(names):
        raise UserError(
            f"{path} names {len(names)} classes but the data has label {max_label:g}; "
            "make it one name a line for every label (im2rec --list --recursive writes it), or delete it"
        )


def _classes_beside(rec_paths, labels):
    """The names in X.classes beside the .rec files (the same for all of them), or None when there is none."""
    found = {}
    for rec in rec_paths:
        path = os.path.splitext(rec)[0] + CLASSES_EXT
        if os.path.isfile(path):
            found[path] = read_classes(path)
    if not found:
        return None
    (path, names), *others = found.items()
    for other, other_names in others:
        if other_names != names:
            raise UserError(f"{path} and {other} name different classes; give the .rec files one set of names")
    first = labels[:, 0] if labels.ndim == 2 else labels
    if len(first):
        check_class_names(path, names, float(np.nanmax(first)))
    return names


class RecSource:
    """Records of one or several .rec files (with or without .idx): labels up front, image bytes on demand."""

    def __init__(self, rec_paths, idx_paths=None):
        self.readers, self.offsets, self.files = [], [], []
        labels, counts, n_empty = [], [], 0
        idx_paths = list(idx_paths or []) + [""] * len(rec_paths)
        for f, (rec, idx) in enumerate(zip(rec_paths, idx_paths)):
            if not os.path.isfile(rec):
                raise UserError(f"data file {rec} not found; pass an existing .rec (see tools/im2rec.py)")
            idx = idx or os.path.splitext(rec)[0] + ".idx"
            reader = recordio.RecordReader(rec)
            if os.path.isfile(idx):
                _, offs = recordio.read_index(idx)
                offs = np.sort(offs)
                recordio.check_index(rec, offs, idx)
            else:
                offs = recordio.scan_offsets(rec)
            lab, count, payload = recordio.scan_labels(reader, offs)
            has_image = payload > 0  # insightface-style header records hold labels only: they are not samples
            n_empty += int((~has_image).sum())
            self.readers.append(reader)
            self.offsets.append(offs[has_image])
            self.files.append(np.full(int(has_image.sum()), f, dtype=np.int32))
            labels.append(lab[has_image])
            counts.append(count[has_image])
        self.offsets = np.concatenate(self.offsets)
        self.files = np.concatenate(self.files)
        self.labels = _stack_labels(labels, np.concatenate(counts))
        self.classes = _classes_beside(rec_paths, self.labels)
        self.skipped_no_image = n_empty
        self.names = rec_paths

    def __len__(self):
        return len(self.offsets)

    def read(self, i):
        """The encoded image bytes of sample i."""
        _, payload = recordio.unpack(self.readers[self.files[i]].read_at(int(self.offsets[i])))
        return payload

    def where(self, i):
        """Human-readable location of sample i (file and byte offset)."""
        return f"{self.names[self.files[i]]} at byte {int(self.offsets[i])}"


def _stack_labels(chunks, counts):
    """One label array over all files: (n,) when every record has one label, else (n, widest) zero-padded."""
    if not len(counts):
        return np.zeros((0,), np.float32)
    width = int(counts.max())  # the widest sample, not a dropped header record, sets the width
    out = np.concatenate([np.pad(c[:, :width], ((0, 0), (0, width - min(width, c.shape[1])))) for c in chunks])
    return out[:, 0] if width == 1 else out


class FolderSource:
    """Images in class subfolders (root/CLASS/*.jpg); labels are the sorted class names' positions."""

    def __init__(self, root):
        if not os.path.isdir(root):
            raise UserError(f"data folder {root} not found")
        self.classes = sorted(d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d)))
        self.paths, labels = [], []
        for c, name in enumerate(self.classes):
            for dirpath, _, files in sorted(os.walk(os.path.join(root, name))):
                for fn in sorted(files):
                    if fn.lower().endswith(IMAGE_EXTS):
                        self.paths.append(os.path.join(dirpath, fn))
                        labels.append(c)
        if not self.paths:
            raise UserError(f"no images ({', '.join(IMAGE_EXTS)}) in class subfolders of {root}")
        self.labels = np.asarray(labels, np.float32)
        self.skipped_no_image = 0

    def __len__(self):
        return len(self.paths)

    def read(self, i):
        """The encoded bytes of image i."""
        with open(self.paths[i], "rb") as f:
            return f.read()

    def where(self, i):
        """The path of image i."""
        return self.paths[i]


def open_source(path, idx=""):
    """Open --data-train/--data-val: a folder of class subfolders, or one or several comma-separated .rec."""
    if os.path.isdir(path):
        return FolderSource(path)
    recs = [p for p in path.split(",") if p]
    idxs = [p for p in idx.split(",") if p] if idx else []
    return RecSource(recs, idxs)
