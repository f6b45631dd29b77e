"""What an MXNet user meets first: commands of MXNet's example that must run as they did."""


def test_train_mnist_benchmark_runs_without_mnist(cli):
    proc = cli("train_mnist.py", "--benchmark", "1", "--num-epochs", "1", "--num-examples", "256", "--gpus", "")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "Epoch[0] Train-accuracy=" in proc.stderr and "MNIST" not in proc.stderr  # no download attempted


def test_fine_tune_error_names_its_own_flag(cli, tmp_path):
    missing = tmp_path / "nothing"
    proc = cli("fine-tune.py", "--pretrained-model", missing, "--num-classes", "3", "--data-train", tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1].startswith(f"fine-tune.py: error: --pretrained-model {missing}: ")


def test_gpus_without_cuda_is_one_line_before_any_worker(cli):
    import pytest
    import torch

    if torch.cuda.is_available():
        pytest.skip("this host has CUDA")
    proc = cli("train_mnist.py", "--gpus", "0,1", "--mnist-mirror", "file:///nonexistent", "--num-epochs", "1")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr and "rank" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if ": error:" in line]
    assert errors == [
        "train_mnist.py: error: --gpus 0,1: no CUDA GPU is available here; pass --gpus '' to train on the CPU"
    ]
