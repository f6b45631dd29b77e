"""Gradient compression for --gc-type, as DDP communication hooks (they run per bucket, overlapped with backward).

  none   plain all-reduce of the mean gradient (DDP's default)
  fp16   buckets cast to float16 for the all-reduce, back to float32 after (torch's fp16_compress_hook)
  bf16   the same with bfloat16 (wider range, fewer mantissa bits)
  2bit   MXNet's threshold quantisation: each element of gradient + residual becomes +t, -t or 0 (2 bits),
         what was not sent stays in the residual for the next step (error feedback); the codes, 16x smaller
         than float32, are all-gathered and every worker decodes and averages them.
MXNet compared the threshold against gradients summed over a worker's batch (its losses are not divided by
the batch size), so the 2bit hook scales DDP's mean gradient by the per-worker batch before quantising:
--gc-threshold keeps MXNet's meaning and its default 0.5.
"""

import logging

import torch
import torch.distributed as dist
from torch.distributed.algorithms.ddp_comm_hooks import default_hooks

from common.util import UserError, choice_error

GC_TYPES = ("none", "fp16", "bf16", "2bit")


def quantize_2bit(grad, residual, threshold):
    """Add grad to residual, take +-threshold out where it is reached; return the codes packed 4 to a byte."""
    residual += grad
    pos, neg = residual >= threshold, residual <= -threshold
    residual[pos] -= threshold
    residual[neg] += threshold
    codes = pos.to(torch.uint8) | (neg.to(torch.uint8) << 1)  # 0: zero, 1: +t, 2: -t
    codes = torch.nn.functional.pad(codes, (0, -len(codes) % 4)).view(-1, 4)
    return codes[:, 0] | (codes[:, 1] << 2) | (codes[:, 2] << 4) | (codes[:, 3] << 6)


def dequantize_2bit(packed, n, threshold):
    """The float32 values (+threshold, -threshold or 0) of the first n codes in packed."""
    codes = torch.stack([(packed >> s) & 3 for s in (0, 2, 4, 6)], 1).flatten()[:n]
    return ((codes == 1).float() - (codes == 2).float()) * threshold


class TwoBitState:
    """The 2bit hook's settings and one residual per DDP bucket."""

    def __init__(self, threshold, batch_size, group=None):
        self.threshold, self.scale, self.group, self.residuals = threshold, float(batch_size), group, {}


def two_bit_hook(state, bucket):
    """DDP hook: quantise this worker's bucket with error feedback, all-gather the codes, decode the mean."""
    grad = bucket.buffer()
    key, n = bucket.index(), grad.numel()
    residual = state.residuals.get(key)
    if residual is None or residual.numel() != n:  # DDP rebuilds its buckets after the first step
        residual = state.residuals[key] = torch.zeros(n, dtype=torch.float32, device=grad.device)
    packed = quantize_2bit(grad.detach().float().flatten() * state.scale, residual, state.threshold)
    world = dist.get_world_size(state.group)
    gathered = [torch.empty_like(packed) for _ in range(world)]
    fut = dist.all_gather(gathered, packed, group=state.group, async_op=True).get_future()

    def decode(_fut):
        total = sum(dequantize_2bit(p, n, state.threshold) for p in gathered)
        return (total / (world * state.scale)).to(grad.dtype).view_as(grad)

    return fut.then(decode)


def register(model, gc_type, threshold, batch_size):
    """Install the --gc-type hook on a DDP model (a plain model has nothing to communicate)."""
    if gc_type not in GC_TYPES:
        raise choice_error("--gc-type", gc_type, GC_TYPES)
    if gc_type == "2bit" and not threshold > 0:
        raise UserError(f"--gc-threshold {threshold}: the 2bit threshold must be positive, e.g. 0.5")
    if gc_type == "none":
        return
    if not isinstance(model, torch.nn.parallel.DistributedDataParallel):
        logging.info("--gc-type %s: one worker, no gradient is sent, nothing to compress", gc_type)
        return
    if gc_type == "fp16":
        model.register_comm_hook(None, default_hooks.fp16_compress_hook)
    elif gc_type == "bf16":
        model.register_comm_hook(None, default_hooks.bf16_compress_hook)
    else:
        model.register_comm_hook(TwoBitState(threshold, batch_size), two_bit_hook)
