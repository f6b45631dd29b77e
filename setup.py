"""Install the image-classification training suite (MXNet's example interface on PyTorch).

A checkout keeps MXNet's layout (scripts at the top, common/, symbols/, tools/, data/ beside them). The wheel puts
that whole tree inside one package, mxtorch_imgcls, so that no top-level name such as `common` or `tools` can
collide with another package's, and every script is a console command with the prefix mxtorch- (see
mxtorch_imgcls/__init__.py). An editable install (`pip install -e .`) runs the checkout's own scripts.
"""

import os
import shutil
import sys

from setuptools import setup
from setuptools.command.build_py import build_py

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from mxtorch_imgcls import SCRIPTS  # noqa: E402 - the command table, one place for it

FOLDERS = ("common", "symbols", "tools", "data")


class BuildWithScripts(build_py):
    """build_py, then the entry scripts copied into the package: they sit at the top of a checkout, not in a package."""

    def run(self):
        super().run()
        target = os.path.join(self.build_lib, "mxtorch_imgcls")
        for script in SCRIPTS.values():
            if "/" not in script:  # tools/* come with the tools package
                shutil.copy(script, os.path.join(target, script))


setup(
    name="mxtorch-imgcls",
    version="0.1.0",
    description="Image-classification training suite with Apache MXNet's example interface, running on PyTorch",
    python_requires=">=3.10",
    packages=["mxtorch_imgcls", *(f"mxtorch_imgcls.{folder}" for folder in FOLDERS)],
    package_dir={"mxtorch_imgcls": "mxtorch_imgcls", **{f"mxtorch_imgcls.{f}": f for f in FOLDERS}},
    package_data={"mxtorch_imgcls.data": ["mnist-sample/*", "README.md"]},
    cmdclass={"build_py": BuildWithScripts},
    # What training needs; export and TensorBoard are extras, and each feature that needs one names it.
    install_requires=[
        "torch>=2.1",
        "torchvision>=0.16",
        "numpy>=1.24",
        "pillow>=10.0",
        "opencv-python-headless>=4.8",
        "safetensors>=0.4",
        "tqdm>=4.60",
        "simplejpeg>=1.7,<2",
        "matplotlib>=3.7",
        "timm>=1.0,<2",
    ],
    extras_require={
        "export": ["onnx>=1.16,<2", "onnxruntime>=1.18,<2", "onnxscript>=0.3,<1"],
        "tensorboard": ["tensorboard>=2.12"],
        # DALI's CPU pipeline decodes only the crop window; used when installed, optional elsewhere.
        "dali": ['nvidia-dali-cuda130>=1.40; platform_system == "Linux"'],
        # the tests exercise the export too
        "test": [
            "pytest>=7",
            "hypothesis>=6",
            "ruff>=0.5",
            "scikit-image>=0.21",
            "onnx>=1.16,<2",
            "onnxruntime>=1.18,<2",
            "onnxscript>=0.3,<1",
        ],
    },
    entry_points={"console_scripts": [f"mxtorch-{name} = mxtorch_imgcls:{name.replace('-', '_')}" for name in SCRIPTS]},
)
