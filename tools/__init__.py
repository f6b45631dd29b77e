"""Command-line tools: im2rec, rec2idx, verify-rec, launch, export, convert_mxnet."""
