"""Install the image-classification training suite (MXNet's example interface on PyTorch)."""

from setuptools import setup

setup(
    name="mxtorch-imgcls",
    version="0.1.0",
    description="Image-classification training suite with Apache MXNet's example interface, running on PyTorch",
    python_requires=">=3.10",
    packages=["common", "symbols", "tools"],
    py_modules=[],
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
        "onnx>=1.16,<2",
        "onnxruntime>=1.18,<2",
        "onnxscript>=0.3,<1",
    ],
    extras_require={
        # DALI's CPU pipeline decodes only the crop window; used when installed, optional elsewhere.
        "dali": ['nvidia-dali-cuda130>=1.40; platform_system == "Linux"'],
        "test": ["pytest>=7", "hypothesis>=6", "ruff>=0.5", "scikit-image>=0.21"],
    },
    entry_points={
        "console_scripts": [
            "im2rec = tools.im2rec:main",
            "rec2idx = tools.rec2idx:main",
            "verify-rec = tools.verify_rec:main",
        ]
    },
)
