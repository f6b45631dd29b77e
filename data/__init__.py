"""Dataset helpers of the entry scripts: downloads with SHA-256 checks, format conversion, the MNIST sample."""
