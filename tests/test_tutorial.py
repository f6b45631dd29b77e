"""docs/tutorial.md stays true: every ```bash block runs, in order, and the facts the page states hold."""

import os
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
TUTORIAL = REPO / "docs" / "tutorial.md"


def bash_blocks(text):
    """The ```bash blocks of a Markdown text, in order, with a leading `python ` turned into "$PY "."""
    blocks = re.findall(r"^```bash\n(.*?)^```", text, flags=re.M | re.S)
    return [re.sub(r"^(\s*)python ", r'\1"$PY" ', b, flags=re.M) for b in blocks]


def run_tutorial(work):
    """Run every block from the repo root with $WORK set to work; return each block's combined output."""
    env = dict(os.environ, WORK=str(work), PY=sys.executable, PYTHONUNBUFFERED="1")
    outputs = []
    for block in bash_blocks(TUTORIAL.read_text()):
        proc = subprocess.run(
            ["bash", "-e", "-c", block], cwd=REPO, env=env, capture_output=True, text=True, timeout=300
        )
        output = proc.stdout + proc.stderr
        assert proc.returncode == 0, f"block failed (exit {proc.returncode}):\n{block}\n--- output:\n{output}"
        outputs.append(output)
    return outputs


def last_accuracy(output):
    """The last Validation-accuracy of a training log."""
    return float(re.findall(r"Validation-accuracy=([0-9.]+)", output)[-1])


def test_tutorial_runs_and_its_facts_hold(tmp_path):
    work = tmp_path / "work"
    outputs = run_tutorial(work)
    assert len(outputs) == 9, "the tutorial's steps changed: update the checks below"
    images, lists, packs, train, score, predict, finetune, predict_parity, export = outputs
    assert "wrote 5000 PNG images" in images
    assert (work / "digits-train.classes").read_text().split() == [str(d) for d in range(10)]
    assert "wrote 4000 records" in packs and "wrote 1000 records" in packs
    assert last_accuracy(train) > 0.9
    assert "Best checkpoint is now epoch" in train and (work / "model" / "lenet-best.json").exists()
    assert float(re.search(r"\('accuracy', ([0-9.]+)\)", score).group(1)) > 0.9
    assert re.search(r"^  1\. [0-9.]+  3 \(3\)$", predict, flags=re.M), predict
    assert (work / "parity-train.classes").read_text().split() == ["even", "odd"]
    assert "replaced by one with 2 outputs" in finetune and last_accuracy(finetune) > 0.85
    assert re.search(r"^  1\. [0-9.]+  odd \(1\)$", predict_parity, flags=re.M), predict_parity
    assert (work / "parity.onnx").stat().st_size > 0
    assert "top-1 agreement" in export
