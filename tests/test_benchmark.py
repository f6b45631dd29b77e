"""benchmark.py through its command line: 1 and 2 CPU worker processes, the table, the CSV, the PNG, --simulate."""

import csv

from common import scaling


def test_one_and_two_processes_table_csv_png(cli, tmp_path):
    out = tmp_path / "bench"
    proc = cli(
        "benchmark.py",
        "--networks",
        "native:mlp:16:28",
        "--gpu_count",
        "2",
        "--batches",
        "6",
        "--disp",
        "2",
        "--output",
        out,
        "--simulate",
        "--link-gbps",
        "10",
        check=0,
    )
    rows = list(csv.DictReader((out / "benchmark.csv").open()))
    measured = [r for r in rows if r["kind"] == "measured"]
    assert [int(r["devices"]) for r in measured] == [1, 2]
    assert [int(r["devices"]) for r in rows if r["kind"] == "simulated"] == [8, 16, 32, 64, 128, 256]
    for r in rows:
        speed, speedup, eff = float(r["samples_per_sec"]), float(r["speedup"]), float(r["efficiency"])
        assert speed > 0 and abs(eff - speedup / int(r["devices"])) < 1e-3
    assert float(measured[0]["speedup"]) == 1.0
    simulated = [float(r["efficiency"]) for r in rows if r["kind"] == "simulated"]
    assert all(a >= b for a, b in zip(simulated, simulated[1:])) and simulated[-1] < 1  # more devices, more cost
    assert (out / "speedup.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (out / "mlp_2.log").read_text().count("Speed:") >= 2
    assert "--num-workers 2" in proc.stdout and "efficiency" in proc.stdout
    assert "10 Gbit/s link" in proc.stdout and "gradient" in proc.stdout
    # calibrated to the measured run: 8 devices cannot do better than the 2 measured (the link model alone said 99.9%)
    assert "calibrated to 1 measured run(s)" in proc.stdout and simulated[0] <= float(measured[1]["efficiency"])
    table = [line.split() for line in proc.stdout.splitlines() if line.startswith("mlp ")]
    assert [t[1] for t in table[:2]] == ["1", "2"] and table[0][-1] == "measured"


def test_bad_network_and_missing_worker_file(cli, tmp_path):
    proc = cli("benchmark.py", "--networks", "native:nosuchnet-50:32:224", "--output", tmp_path)
    assert proc.returncode == 2 and "nosuchnet-50" in proc.stderr and "resnet" in proc.stderr
    proc = cli("benchmark.py", "--networks", "eager:resnet-50:32:224", "--output", tmp_path)
    assert proc.returncode == 2 and "valid values: native, symbolic, imperative, hybrid" in proc.stderr
    proc = cli("benchmark.py", "--worker_count", "2", "--output", tmp_path)
    assert proc.returncode == 2 and "--worker_count 2 needs --worker_file" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_gluon_name_runs_the_suites_network(cli, tmp_path):
    out = tmp_path / "bench"
    args = ("--networks", "imperative:resnet18_v1:2:32", "--batches", "4", "--disp", "2", "--output", out)
    proc = cli("benchmark.py", *args, check=0)
    assert "mode imperative" in proc.stdout and "same eager PyTorch network" in proc.stdout
    assert "--network resnet-v1 --num-layers 18 " in proc.stdout
    log = (out / "resnet18_v1_1.log").read_text()
    assert "network='resnet-v1'" in log and "num_layers=18" in log and log.count("Speed:") >= 1
    assert [r["network"] for r in csv.DictReader((out / "benchmark.csv").open())] == ["resnet18_v1"]


def test_gluon_names_map_to_train_imagenet_flags():
    expect = {
        "symbolic:resnet152_v1:32:299": ("resnet-v1", {"num_layers": 152}),
        "hybrid:resnet50_v2:32:224": ("resnet", {"num_layers": 50}),
        "hybrid:vgg16_bn:32:224": ("vgg", {"num_layers": 16, "batch_norm": 1}),
        "imperative:mobilenet0.5:32:224": ("mobilenet", {"multiplier": 0.5}),
        "imperative:mobilenetv2_0.25:32:224": ("mobilenetv2", {"multiplier": 0.25}),
        "imperative:inceptionv3:32:299": ("inception-v3", {}),
        "imperative:densenet161:32:224": ("densenet", {"num_layers": 161}),
        "native:alexnet:32:224": ("alexnet", {}),
        "native:resnet-50:32:224": ("resnet", {"num_layers": 50}),
    }
    for text, (network, arguments) in expect.items():
        net = scaling.parse_network(text)
        assert (net["network"], net["arguments"]) == (network, arguments), text


def test_unknown_gluon_name_and_torchvision_only_fail_in_one_line(cli, tmp_path):
    proc = cli("benchmark.py", "--networks", "imperative:resnet19_v1:32:224", "--output", tmp_path)
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1
    assert "resnet19_v1" in proc.stderr and "resnet152_v1" in proc.stderr and "mobilenetv2_0.25" in proc.stderr
    proc = cli("benchmark.py", "--networks", "hybrid:squeezenet1.1:32:224", "--output", tmp_path)
    assert proc.returncode == 2 and "benchmark_score.py" in proc.stderr and "Traceback" not in proc.stderr
