"""benchmark.py through its command line: 1 and 2 CPU worker processes, the table, the CSV, the PNG, --simulate."""

import csv


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
    assert (out / "mlp_2_log").read_text().count("Speed:") >= 2
    assert "--num-workers 2" in proc.stdout and "efficiency" in proc.stdout
    assert "10 Gbit/s link" in proc.stdout and "gradient" in proc.stdout
    table = [line.split() for line in proc.stdout.splitlines() if line.startswith("mlp ")]
    assert [t[1] for t in table[:2]] == ["1", "2"] and table[0][-1] == "measured"


def test_bad_network_and_missing_worker_file(cli, tmp_path):
    proc = cli("benchmark.py", "--networks", "native:nosuchnet-50:32:224", "--output", tmp_path)
    assert proc.returncode == 2 and "nosuchnet-50" in proc.stderr and "resnet" in proc.stderr
    proc = cli("benchmark.py", "--networks", "hybrid:resnet-50:32:224", "--output", tmp_path)
    assert proc.returncode == 2 and "valid values: native" in proc.stderr
    proc = cli("benchmark.py", "--worker_count", "2", "--output", tmp_path)
    assert proc.returncode == 2 and "--worker_count 2 needs --worker_file" in proc.stderr
    assert "Traceback" not in proc.stderr
