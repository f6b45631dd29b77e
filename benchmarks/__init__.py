"""Benchmarks that print the suite's figure, MXNet 1.9.1's figure and their ratio from one run."""
