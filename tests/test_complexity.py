"""tools/complexity.py through its command line, against the figures torchvision publishes for its weights.

torchvision documents each weight's parameter count (meta["num_params"]) and its "GFLOPS" (meta["_ops"], which are
multiply-accumulates of one image at the weights' crop size); the suite's torchvision-backed families must report
the same. The published figures are read from torchvision here, not typed in.
"""

import re

import pytest
from torchvision import models

from symbols import densenet, efficientnet, mobilenetv3, regnetx, shufflenetv2

# (the suite's command-line arguments, the torchvision builder the family uses)
CASES = [
    (["--network", "regnetx-400mf"], regnetx.VARIANTS["400mf"]),
    (["--network", "mobilenetv3-large"], mobilenetv3.VARIANTS["large"]),
    (["--network", "mobilenetv3-small"], mobilenetv3.VARIANTS["small"]),
    (["--network", "efficientnet-b3"], efficientnet.VARIANTS["b3"]),
    (["--network", "shufflenetv2", "--multiplier", "1.0"], shufflenetv2.VARIANTS["1.0"]),
    (["--network", "densenet", "--num-layers", "121"], densenet.DEPTHS[121]),
]
LINE = re.compile(r"^params=([\d.e+-]+)M gmacs=([\d.e+-]+)$")


def _published(builder):
    """(crop size, parameters, GMACs) torchvision publishes for the default weights of builder."""
    weights = models.get_model_weights(builder).DEFAULT
    return weights.transforms().crop_size[0], weights.meta["num_params"], weights.meta["_ops"]


@pytest.mark.parametrize("args,builder", CASES, ids=[" ".join(a[1:]) for a, _ in CASES])
def test_complexity_matches_torchvision_published_figures(args, builder):
    from common import complexity

    crop, params, gmacs = _published(builder)  # the published figures are of one image at the weights' crop
    kwargs = {"num_classes": 1000, "image_shape": f"3,{crop},{crop}"}
    kwargs |= {
        a[2:].replace("-", "_"): (float if a == "--multiplier" else int)(v) for a, v in zip(args[2::2], args[3::2])
    }
    got_params, macs = complexity.count(complexity.build(args[1], kwargs), (3, crop, crop))
    assert got_params == params, args
    assert macs / 1e9 == pytest.approx(gmacs, rel=0.02), (args, macs / 1e9, gmacs)


def test_complexity_cli_prints_the_published_figures(cli):
    args, builder = CASES[3]  # efficientnet-b3: its weights' crop is 300, not 224
    crop, params, gmacs = _published(builder)
    proc = cli("tools/complexity.py", *args, "--image-shape", f"3,{crop},{crop}", check=0)
    m = LINE.match(proc.stdout.strip())
    assert m, proc.stdout
    assert float(m.group(1)) == pytest.approx(params / 1e6, rel=1e-3)
    assert float(m.group(2)) == pytest.approx(gmacs, rel=0.02)


def test_complexity_bad_network_is_one_line(capsys):
    from tools import complexity as tool

    with pytest.raises(SystemExit) as stop:
        tool.main(["--network", "resnet"])
    err = capsys.readouterr().err
    assert stop.value.code == 2 and err.count("\n") == 1 and "--num-layers" in err and "Traceback" not in err
