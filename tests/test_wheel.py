"""The wheel: built from the checkout, installed into a new virtual environment, the MNIST main job run as a console
command from an empty folder, offline; and no top-level `common`/`symbols`/`tools`/`data` among the installed names."""

import site
import subprocess
import sys
import venv

from tests.conftest import REPO


def test_wheel_installs_every_command_and_runs_the_main_job(tmp_path):
    wheels = tmp_path / "wheels"
    build = [sys.executable, "-m", "pip", "wheel", str(REPO), "--no-deps", "--no-build-isolation", "-w", str(wheels)]
    subprocess.run([*build, "-q"], check=True, capture_output=True, timeout=300)
    (wheel,) = wheels.glob("mxtorch_imgcls-*.whl")
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    py = env_dir / "bin" / "python"
    purelib = subprocess.run([py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], **TEXT)
    # the dependencies (torch, ...) come from this test's environment, not from a download
    (tmp_path / "deps.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    (tmp_path / "deps.pth").rename(f"{purelib.stdout.strip()}/deps.pth")
    subprocess.run([py, "-m", "pip", "install", "--no-deps", "-q", str(wheel)], check=True, timeout=300, **TEXT)
    bin_dir = env_dir / "bin"
    commands = sorted(p.name for p in bin_dir.glob("mxtorch-*"))
    assert commands == sorted(
        f"mxtorch-{c}"
        for c in ["train-mnist", "train-cifar10", "train-imagenet", "fine-tune", "score", "predict", "benchmark"]
        + ["benchmark-score", "im2rec", "rec2idx", "verify-rec", "launch", "export", "convert"]
    )
    for name in ("common", "symbols", "tools", "data"):  # the suite takes none of these top-level names
        probe = subprocess.run([py, "-c", f"import {name}"], cwd=tmp_path, **TEXT)
        assert probe.returncode != 0 and "No module named" in probe.stderr, name
    work = tmp_path / "empty"
    work.mkdir()
    flags = ["--mnist-mirror", "file:///nonexistent", "--num-epochs", "1"]
    proc = subprocess.run([bin_dir / "mxtorch-train-mnist", *flags], cwd=work, timeout=600, **TEXT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "bundled" in proc.stderr and "Epoch[0] Validation-accuracy=" in proc.stderr
    assert (work / "runs" / "mnist-sample" / "lenet-0001.params").is_file()  # the sample ships inside the wheel
    helped = subprocess.run([bin_dir / "mxtorch-im2rec", "--help"], cwd=work, timeout=60, **TEXT)
    assert helped.returncode == 0 and "--list" in helped.stdout


TEXT = {"capture_output": True, "text": True}
