"""benchmark_score.py through its command line: MXNet's lines, the CSV, the PNG; Gluon names; one-line errors."""

import csv
import re


def test_two_networks_lines_csv_png(cli, tmp_path):
    out = tmp_path / "score"
    args = ("--network", "mobilenet0.25,squeezenet1.1", "--batch-size", "1,2", "--num-batches", "2")
    proc = cli("benchmark_score.py", *args, "--output", out, check=0)
    lines = proc.stderr.splitlines()
    assert "INFO:root:network: mobilenet0.25" in lines and "INFO:root:network: squeezenet1.1" in lines
    assert lines.count("INFO:root:device: cpu(0)") == 2
    speeds = [re.fullmatch(r"INFO:root:batch size +(\d+), dtype float32, images/sec: ([0-9.]+)", x) for x in lines]
    speeds = [(int(m[1]), float(m[2])) for m in speeds if m]
    assert [b for b, _ in speeds] == [1, 2, 1, 2] and all(s > 0 for _, s in speeds)
    rows = list(csv.DictReader((out / "benchmark_score.csv").open()))
    assert [(r["network"], r["batch_size"]) for r in rows] == [
        ("mobilenet0.25", "1"),
        ("mobilenet0.25", "2"),
        ("squeezenet1.1", "1"),
        ("squeezenet1.1", "2"),
    ]
    assert [round(float(r["images_per_sec"]), 2) for r in rows] == [round(s, 2) for _, s in speeds]
    assert {r["dtype"] for r in rows} == {"float32"} and {r["device"] for r in rows} == {"cpu(0)"}
    assert (out / "benchmark_score.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_suite_name_and_bfloat16(cli, tmp_path):
    args = ("--network", "resnet-v1-18", "--batch-size", "1", "--num-batches", "1", "--dtype", "bfloat16")
    proc = cli("benchmark_score.py", *args, "--output", tmp_path, check=0)
    assert re.search(r"batch size  1, dtype bfloat16, images/sec: [0-9.]+", proc.stderr)
    assert list(csv.DictReader((tmp_path / "benchmark_score.csv").open()))[0]["dtype"] == "bfloat16"


def test_bad_values_fail_in_one_line(cli, tmp_path):
    for flag, value, words in (
        ("--network", "resnet19_v1", ["resnet18_v1", "squeezenet1.1", "mobilenetv2_0.5", "resnet-v1"]),
        ("--dtype", "int4", ["float32", "bfloat16"]),
        ("--batch-size", "1,x", ["positive integers"]),
    ):
        proc = cli("benchmark_score.py", flag, value, "--output", tmp_path)
        assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
        assert value in proc.stderr and all(w in proc.stderr for w in words)
    assert not (tmp_path / "benchmark_score.csv").exists()
