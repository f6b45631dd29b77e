"""Shared helpers of the training suite: data, fit loop, RecordIO, model zoo, utilities."""
