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


def test_use_imagenet_data_augmentation_applies_the_preset(cli, tmp_path):
    from tests.test_data import random_images, write_rec

    rec = write_rec(tmp_path / "d", random_images(4, 64, 64), [0, 1, 0, 1])
    flags = ("--data-train", rec, "--test-io", "1", "--batch-size", "2", "--image-shape", "3,32,32", "--gpus", "")
    proc = cli("train_imagenet.py", *flags, "--use-imagenet-data-augmentation", "1", "--brightness", "0.1", check=0)
    assert "--use-imagenet-data-augmentation 1: the ImageNet preset" in proc.stderr
    assert "random_resized_crop=1" in proc.stderr and "min_random_area=0.08" in proc.stderr
    assert "brightness=0.1" in proc.stderr  # a flag given keeps its value
    plain = cli("train_imagenet.py", *flags, check=0)
    # the start-up line lists what differs from the defaults: without the preset, random-resized crop is not among it
    assert "random_resized_crop" not in plain.stderr and "ImageNet preset" not in plain.stderr


def test_min_max_crop_size_crop_a_random_square(cli, tmp_path):
    import cv2
    import numpy as np

    from common import augment
    from tests.test_data import make_args, random_images, write_rec

    args = make_args("--min-crop-size", "16", "--max-crop-size", "16", "--image-shape", "3,8,8")
    geo = augment.Geometry(args, (3, 8, 8), train=True)
    img = random_images(1, 32, 32)[0]
    out = np.empty((8, 8, 3), np.uint8)
    assert geo.load(cv2.imencode(".png", img[:, :, ::-1])[1].tobytes(), np.random.default_rng(0), out)
    expected = cv2.resize(img[8:24, 8:24], (8, 8), interpolation=cv2.INTER_LINEAR)  # the centre 16x16, resized
    assert np.array_equal(out, expected)
    rec = write_rec(tmp_path / "d", random_images(4, 40, 40), [0, 1, 0, 1])
    flags = ("--data-train", rec, "--test-io", "1", "--batch-size", "2", "--image-shape", "3,24,24", "--gpus", "")
    proc = cli("train_imagenet.py", *flags, "--min-crop-size", "20", "--max-crop-size", "36", check=0)
    assert "test-io: 4 samples" in proc.stderr
    proc = cli("train_imagenet.py", *flags, "--min-crop-size", "20")
    assert proc.returncode == 2 and "--min-crop-size 20 / --max-crop-size -1: give both" in proc.stderr


def test_train_mnist_add_stn(cli, tmp_path):
    import torch

    import symbols
    from common import modelzoo, optim

    net = symbols.get_symbol("lenet", num_classes=10, add_stn=True)
    optim.init_weights(net, "default", "lenet")
    x = torch.rand(2, 1, 28, 28)
    assert torch.allclose(net.stn(x), x, atol=1e-5)  # MXNet's initializer: the identity transform to start with
    names = set(symbols.mxnet_param_map(net).values())
    assert {"arg:stn_loc_weight", "arg:convolution3_weight", "arg:fullyconnected1_bias"} <= names
    prefix = tmp_path / "stn"
    flags = ("--network", "lenet", "--add_stn", "--num-epochs", "1", "--batch-size", "400")
    proc = cli("train_mnist.py", *flags, "--mnist-mirror", "file:///nonexistent", "--model-prefix", prefix, check=0)
    assert "Epoch[0] Validation-accuracy=" in proc.stderr
    model, info = modelzoo.load_model(str(prefix), 1)
    assert info["arguments"]["add_stn"] is True and hasattr(model, "stn")


def test_local_launcher_runs_mxnet_workers_each_with_the_batch(cli):
    launch = ["tools/launch.py", "--launcher", "local", "-n", "2"]
    train = ["python", "train_mnist.py", "--network", "mlp", "--mnist-mirror", "file:///nonexistent", "--gpus", ""]
    train += ["--kv-store", "dist_sync", "--num-epochs", "1", "--batch-size", "100"]
    proc = cli(*launch, "--p3", *train, check=0)
    assert "Total batch size 200 (100 per batch x 2 workers x 1 accumulated)" in proc.stdout
    assert "each of the 2 worker processes here trains --batch-size 100, as MXNet's local launcher" in proc.stdout
    assert "launch.py: --p3 ignored: DDP already overlaps" in proc.stderr
    split = cli(*launch, "--split-batch", *train, check=0)
    assert "Total batch size 100 (50 per batch x 2 workers x 1 accumulated)" in split.stdout
