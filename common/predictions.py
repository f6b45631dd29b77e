"""Evaluation figures, and prediction files scored against a ground truth, without the network (numpy only).

  summarize / summary_lines        accuracy, top-k, macro F1 and per-class figures of a confusion matrix, as lines
  read_synset(path)                class names, one per line (MXNet's synset.txt)
  write_predictions(results, ...)  predict.py --format json: one JSON file per image, and the class list
  score_predictions(dir, gts)      those files against a ground-truth map {image name: class} (score.py --preds)

The prediction files: DIR/NAME.json for each image NAME (its path under the folder predict.py was given, with /
between parts, or its file name), holding {"image": NAME, "path": the file read, "num_classes": N, "top_k":
[{"class": index, "name": class name, "score": probability}, ...]}, best first; DIR/synset.txt lists the N class
names, one per line. score.py --preds reads every *.json under DIR; a ground-truth class is an index (a JSON
integer) or a class name (a string, looked up in --synset, else in DIR/synset.txt).
"""

import json
import os

import numpy as np

from common.util import UserError, atomic_write


def summarize(conf, hits, seen, seconds, classes, k=5):
    """Accuracy, top-k (hits: the images whose class is in their top k; reported only when there are more than k
    classes, else it is 1), macro F1 and per-class figures of the confusion matrix conf [true, predicted]."""
    diag, support, predicted = np.diag(conf), conf.sum(1), conf.sum(0)
    recall = np.divide(diag, support, out=np.zeros(len(diag)), where=support > 0)
    precision = np.divide(diag, predicted, out=np.zeros(len(diag)), where=predicted > 0)
    f1 = np.divide(2 * precision * recall, precision + recall, out=np.zeros(len(diag)), where=precision + recall > 0)
    present = support > 0
    names = classes if classes and len(classes) == len(diag) else [str(i) for i in range(len(diag))]
    per_class = [
        {"class": i, "name": names[i], "support": int(support[i]), "accuracy": float(recall[i])}
        | {"precision": float(precision[i]), "f1": float(f1[i])}
        for i in range(len(diag))
    ]
    stats = {"num_examples": int(seen), "accuracy": float(diag.sum() / max(seen, 1))}
    if len(diag) > k:
        stats[f"top_k_accuracy_{k}"] = float(hits / max(seen, 1))
    stats["macro_f1"] = float(f1[present].mean()) if present.any() else 0.0
    return stats | {"images_per_second": seen / max(seconds, 1e-9), "per_class": per_class}


def summary_lines(stats, every_class=False):
    """MXNet's score.py figures, then macro F1 and the per-class accuracy (the 10 worst of many, unless
    every_class)."""
    lines = [str(("accuracy", stats["accuracy"]))]
    # a model of k classes or fewer has every class in its top k: summarize leaves that figure out
    lines += [str((key, value)) for key, value in stats.items() if key.startswith("top_k_accuracy_")]
    lines.append(str(("macro_f1", stats["macro_f1"])))
    rows = [r for r in stats["per_class"] if r["support"]]
    if len(rows) > 20 and not every_class:
        rows = sorted(rows, key=lambda r: r["accuracy"])[:10]
        lines.append(f"per-class accuracy, the 10 lowest of {len(stats['per_class'])} classes:")
    for r in rows:
        lines.append(
            f"  class {r['class']} ({r['name']}): accuracy {r['accuracy']:.4f} of {r['support']}, f1 {r['f1']:.4f}"
        )
    return lines


def read_synset(path, flag="--synset"):
    """Class names from a synset / labels file, one per line (flag: what named the file, for the error)."""
    try:
        with open(path, encoding="utf-8") as f:
            return [line.strip() for line in f if line.strip()]
    except OSError as err:
        raise UserError(f"{flag} {path}: cannot read it ({err.strerror})") from None
    except UnicodeDecodeError:
        raise UserError(f"{flag} {path}: not a text file of class names, one per line") from None


SYNSET_FILE = "synset.txt"


def write_predictions(results, names, out_dir, classes):
    """Write one prediction file per result (names: {path: the image's NAME}) and the class list into out_dir."""
    for r in results:
        name = names[r["path"]]
        doc = {"image": name, "path": r["path"], "num_classes": r["num_classes"]}
        doc["top_k"] = [{"class": t["class"], "name": t["name"], "score": t["probability"]} for t in r["top"]]
        _write_text(os.path.join(out_dir, name + ".json"), json.dumps(doc, indent=1) + "\n", "--out-dir")
    if results:
        n = results[0]["num_classes"]
        lines = classes if classes and len(classes) == n else [str(k) for k in range(n)]
        _write_text(os.path.join(out_dir, SYNSET_FILE), "".join(f"{c}\n" for c in lines), "--out-dir")


def _write_text(path, text, flag):
    """atomic_write(path, text), its folder created; a place that cannot be written is a UserError naming flag."""
    try:
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        atomic_write(path, text, mode="w")
    except OSError as err:
        raise UserError(f"{flag}: cannot write {path} ({err.strerror or err}); pick another place") from None


def _read_json(path, what):
    """The JSON document of a file; one that cannot be read or parsed is a UserError naming it and `what` it is."""
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except OSError as err:
        raise UserError(f"{path}: cannot read it ({err.strerror})") from None
    except (ValueError, UnicodeDecodeError) as err:
        raise UserError(f"{path}: not {what} (bad JSON: {err})") from None


def read_predictions(folder):
    """{image name: (top-k class indices best first, num_classes)} of every prediction file under folder."""
    if not os.path.isdir(folder):
        raise UserError(f"--preds {folder}: no such folder of prediction files")
    preds, where = {}, {}
    for root, _, files in sorted(os.walk(folder)):
        for path in (os.path.join(root, n) for n in sorted(files) if n.endswith(".json")):
            doc = _read_json(path, "a prediction file (predict.py --format json)")
            try:
                name, n, top = doc["image"], doc["num_classes"], [t["class"] for t in doc["top_k"]]
                ok = isinstance(name, str) and _index(n) and top and all(_index(k) and k < n for k in top)
            except (KeyError, TypeError):
                ok = False
            if not ok:
                raise UserError(
                    f"{path}: not a prediction file; want {{'image': name, 'num_classes': N, 'top_k': "
                    "[{'class': index < N, 'name': ..., 'score': ...}, ...]}} (predict.py --format json)"
                )
            if name in preds:
                raise UserError(f"{path}: a second prediction for image {name!r} (the first: {where[name]})")
            preds[name], where[name] = (top, n), path
    if not preds:
        raise UserError(
            f"--preds {folder}: no prediction files (NAME.json) in it; write them with predict.py --format json"
        )
    return preds


def _index(value):
    """Whether value is a JSON integer >= 0."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def read_gts(path, classes, num_classes):
    """{image name: class index} of a ground-truth map {name: class index, or class name when classes are known}."""
    doc = _read_json(path, "a ground-truth map {image name: class}")
    if not isinstance(doc, dict) or not doc:
        raise UserError(f"--gts {path}: not a ground-truth map; want {{image name: class index or name, ...}}")
    index = {c: k for k, c in enumerate(classes or ())}
    gts = {}
    for name, label in doc.items():
        if _index(label) and label < num_classes:
            gts[name] = label
        elif isinstance(label, str) and label in index:
            gts[name] = index[label]
        else:
            known = f"names in {len(classes)} classes" if classes else "no class names (give --synset)"
            raise UserError(
                f"--gts {path}: image {name!r} has class {label!r}, not a class of the predictions "
                f"(indices 0 to {num_classes - 1}; {known})"
            )
    return gts


def score_predictions(folder, gts_path, synset=None):
    """Figures (summarize's, top-k with k the entries of every prediction file) of folder's prediction files
    against the ground-truth map gts_path; classes from synset, else folder's synset.txt."""
    preds = read_predictions(folder)
    counts = sorted({n for _, n in preds.values()})
    if len(counts) > 1:
        raise UserError(f"--preds {folder}: predictions of {counts} classes mixed; score one model's files at a time")
    num_classes = counts[0]
    listed = os.path.join(folder, SYNSET_FILE)
    classes = read_synset(synset) if synset else read_synset(listed, "--preds") if os.path.isfile(listed) else None
    if classes and len(classes) != num_classes:
        raise UserError(
            f"{synset or listed}: {len(classes)} class names for predictions of {num_classes} classes; "
            "give --synset a file of one name per class"
        )
    gts = read_gts(gts_path, classes, num_classes)
    missing = [name for name in gts if name not in preds]
    if missing:
        raise UserError(
            f"--preds {folder}: no prediction for {len(missing)} images of --gts {gts_path} (first: "
            f"{os.path.join(folder, missing[0] + '.json')}); predict every image of the map"
        )
    k = min(len(preds[name][0]) for name in gts)
    conf = np.zeros((num_classes, num_classes), np.int64)
    hits = 0
    for name, label in gts.items():
        top = preds[name][0]
        conf[label, top[0]] += 1
        hits += label in top[:k]
    stats = summarize(conf, hits, len(gts), 0, classes, k=k)
    del stats["images_per_second"]  # nothing ran here
    extra = len(preds) - len(gts)
    return stats | {"confusion": conf.tolist(), "predictions_without_ground_truth": extra}
