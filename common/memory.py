"""Activation checkpointing (--activation-checkpointing 1), MXNet's memory mirror (MXNET_BACKWARD_DO_MIRROR).

A block's forward runs without keeping its inner activations; backward runs it again to get them
(torch.utils.checkpoint, non-reentrant). Only each block's input stays in memory, so peak activation memory
falls to the block inputs plus one block's activations, for about one more forward pass of compute.

Blocks are found by structure, not by family: walking down from the network through plain containers
(nn.Sequential and its subclasses without a forward of their own, ModuleList, ModuleDict), the first module
that has children and a forward of its own is a block: a residual unit, an inception module, a dense layer, an
inverted residual. A network without such blocks (MLP, LeNet, AlexNet, VGG, MobileNet v1: a plain chain of
layers) is trained as it is, and one log line says so.

The block's forward is replaced on the instance, so parameter names, checkpoints and exports are unchanged.
Two things a recomputation must not change:
- BatchNorm running statistics: the recomputation runs BatchNorm in training mode again, which would update
  them twice per step. The block's buffers are copied before the recomputation and put back after it, so they
  end exactly as in a run without checkpointing (tests/test_memory.py). Under torch.compile the recomputation
  is the compiler's (a pure replay of the traced graph, whose buffer updates happen once), and the copies
  are left out.
- Random draws (dropout, stochastic depth): torch.utils.checkpoint restores the RNG state for the
  recomputation, so the same elements are dropped (tests/test_memory.py).
Autocast (--dtype) is recorded with the forward and re-entered for the recomputation by torch.
Measured (benchmarks/bench_memory.py, resnet-50 of MXNet's example, batch 32, 3x224x224, 2 shared CPU cores): peak
activation memory 2,488 MiB without, 1,042 MiB with (58% less, 16 blocks); a step 10% longer (12% more CPU time).
"""

import contextlib
import functools
import types

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

__all__ = ["find_blocks", "checkpoint_blocks", "apply"]


def _is_container(module):
    """A module that holds a row of others: nn.Sequential (subclasses without their own forward), ModuleList/Dict.

    A ModuleList or ModuleDict counts even with a forward of its own (DenseNet's dense block): its members are the
    blocks, and checkpointing each keeps one member's activations at a time, not the whole row's.
    """
    if isinstance(module, (nn.ModuleList, nn.ModuleDict)):
        return True
    return isinstance(module, nn.Sequential) and type(module).forward is nn.Sequential.forward


def find_blocks(model):
    """The blocks of `model` in forward order: below it and plain containers, modules with children and a forward."""
    blocks = []

    def walk(module):
        for child in module.children():
            if _is_container(child):
                walk(child)
            elif any(True for _ in child.children()):
                blocks.append(child)

    walk(model)
    return blocks


@contextlib.contextmanager
def _buffers_kept(block):
    """Put the block's buffers (BatchNorm running statistics, batch counters) back as they were on entry."""
    saved = [(b, b.clone()) for b in block.buffers()]
    try:
        yield
    finally:
        with torch.no_grad():
            for buf, value in saved:
                buf.copy_(value)


def _contexts(block):
    """checkpoint's context_fn: (around the forward, around the recomputation)."""
    return contextlib.nullcontext(), _buffers_kept(block)


def _checkpointed_forward(self, *args, **kwargs):
    """The block's own forward under torch.utils.checkpoint while training with gradients; plain otherwise."""
    forward = type(self).forward
    if not (self.training and torch.is_grad_enabled()):
        return forward(self, *args, **kwargs)
    # the recomputation reads the arguments again: a list the caller grows afterwards (DenseNet's block appends
    # each layer's output to the list it handed that layer) is copied now
    args = tuple(list(a) if isinstance(a, list) else a for a in args)
    if torch.compiler.is_compiling():  # the compiler recomputes from its traced graph: no buffer update repeats
        return checkpoint(forward, self, *args, use_reentrant=False, **kwargs)
    return checkpoint(
        forward, self, *args, use_reentrant=False, context_fn=functools.partial(_contexts, self), **kwargs
    )


def checkpoint_blocks(model):
    """Make every block of `model` recompute its activations in backward; returns the blocks."""
    blocks = find_blocks(model)
    for block in blocks:
        block.forward = types.MethodType(_checkpointed_forward, block)
    return blocks


def apply(model, enabled, network, log):
    """--activation-checkpointing: checkpoint model's blocks when enabled, and say what was done in one line."""
    if not enabled:
        return
    blocks = checkpoint_blocks(model)
    if not blocks:
        log(
            f"activation checkpointing does not apply to {network}: a plain chain of layers without residual or "
            "inception blocks; training without it"
        )
        return
    kinds = sorted({type(b).__name__ for b in blocks})
    log(f"activation checkpointing: {len(blocks)} blocks ({', '.join(kinds)}) recompute their activations in backward")
