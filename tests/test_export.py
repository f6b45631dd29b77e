"""tools/export.py: ONNX (onnxruntime), torch.export and int8 on MXNet's fixtures; score.py --dtype int8."""

import json
import os
import re

import numpy as np
import pytest
import torch


def test_onnx_gives_mxnet_logits(cli, fixtures, tmp_path):
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    out = tmp_path / "lenet.onnx"
    proc = cli("tools/export.py", "--model", fixtures / "lenet", "--format", "onnx", "--output", out, check=0)
    assert re.search(r"onnx: top-1 agreement 1\.0000 on 8 images, largest logit difference [\d.e+-]+", proc.stderr)
    meta = {p.key: json.loads(p.value) for p in onnx.load(str(out)).metadata_props}
    assert meta["network"] == "lenet" and meta["preprocess"]["image_shape"] == [1, 28, 28]
    io = np.load(fixtures / "lenet-io.npz")
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    logits = session.run(None, {session.get_inputs()[0].name: io["x"]})[0]  # batch 2: the batch axis is dynamic
    assert np.abs(logits - io["logits"]).max() <= 1e-4 * np.abs(io["logits"]).max()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lenet.onnx"]  # no temporary or external-weight files
    assert (out.stat().st_mode & 0o777) == 0o666 & ~_umask()  # as open() would make it
    proc = cli("tools/export.py", "--model", fixtures / "lenet", "--format", "onnx", "--output", out / "x")
    assert proc.returncode == 2 and "is a file, not a folder" in proc.stderr and "Traceback" not in proc.stderr
    cli(
        "tools/export.py",
        "--model",
        fixtures / "lenet",
        "--format",
        "onnx",
        "--output",
        tmp_path / "new" / "x",
        check=0,
    )
    assert (tmp_path / "new" / "x").is_file()  # its folder is made, as training makes its prefix's


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


@pytest.mark.slow
def test_torch_export_program(cli, fixtures, tmp_path):
    out = tmp_path / "mlp.pt2"
    proc = cli("tools/export.py", "--model", fixtures / "mlp", "--format", "torch-export", "--output", out, check=0)
    assert "torch-export: top-1 agreement 1.0000" in proc.stderr
    extra = {"preprocess.json": ""}
    program = torch.export.load(str(out), extra_files=extra)
    assert json.loads(extra["preprocess.json"])["network"] == "mlp"
    io = np.load(fixtures / "mlp-io.npz")
    logits = program.module()(torch.from_numpy(io["x"])).detach().numpy()
    assert np.abs(logits - io["logits"]).max() <= 1e-4 * np.abs(io["logits"]).max()


def test_int8_export_and_errors(cli, fixtures, tmp_path):
    tiny = fixtures / "im2rec" / "tiny.rec"
    out = tmp_path / "lenet-int8.pt"
    proc = cli(
        "tools/export.py",
        *("--model", fixtures / "lenet", "--format", "int8", "--output", out, "--data-calib", tiny),
        check=0,
    )
    agree = float(re.search(r"int8: top-1 agreement ([\d.]+)", proc.stderr).group(1))
    assert 0.0 <= agree <= 1.0
    extra = {"preprocess.json": ""}
    scripted = torch.jit.load(str(out), _extra_files=extra)
    assert any("quantized" in str(n.kind()) for n in scripted.inlined_graph.nodes())
    engine = json.loads(extra["preprocess.json"])["quantized_engine"]
    assert engine in torch.backends.quantized.supported_engines
    torch.backends.quantized.engine = engine
    io = np.load(fixtures / "lenet-io.npz")
    assert scripted(torch.from_numpy(io["x"])).shape == (2, 10)


@pytest.mark.parametrize(
    "fmt,message", [("tflite", "valid values: onnx, torch-export, int8"), ("int8", "needs calibration images")]
)
def test_export_errors(fixtures, tmp_path, capsys, fmt, message):
    from tools import export

    with pytest.raises(SystemExit) as stop:
        export.main(["--model", str(fixtures / "lenet"), "--format", fmt, "--output", str(tmp_path / "x")])
    assert stop.value.code == 2 and message in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


@pytest.mark.slow
def test_score_int8_reports_change_and_speedup(cli, fixtures, tmp_path):
    tiny = fixtures / "im2rec" / "tiny.rec"
    report = tmp_path / "r.json"
    proc = cli(
        "score.py",
        *("--model", fixtures / "resnet-20", "--data-val", tiny, "--image-shape", "3,28,28", "--dtype", "int8"),
        *("--batch-size", "3", "--report-json", report),
        check=0,
    )
    m = re.search(r"int8 vs float32: accuracy ([+-][\d.]+), top-5 ([+-][\d.]+), speed-up ([\d.]+)x", proc.stderr)
    doc = json.loads(report.read_text())
    assert float(m.group(1)) == pytest.approx(doc["int8"]["accuracy"] - doc["accuracy"], abs=1e-4)
    assert doc["int8"]["num_examples"] == 9
