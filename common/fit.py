"""Training: MXNet's fit flags and one loop that reads top to bottom.

  batch (uint8 NHWC, CPU) -> device (non-blocking) -> DeviceTransform: float, jitter, normalise, NCHW
  -> forward under autocast -> softmax cross-entropy -> backward (DDP all-reduce when distributed, overlapped
     with backward bucket by bucket; --gc-type compresses the buckets, common/compression.py)
  -> optimizer step every macro-batch -> learning rate for the next step (both: common/optim.py) -> metrics
Metrics are read back to the host only every --disp-batches batches, so a step never waits on the host.
Distributed (common/dist.py): --batch-size is per host as in MXNet; the Speed line is this host's samples/s; epoch
and validation metrics are summed over all workers, so every validation record counts exactly once.
What fit() needs arrives as arguments: the network, the data loader, and for fine-tuning what PREFIX-symbol.json
records of the pretrained network (checkpoint.Pretrained). The per-process batch is `batch`, not a rewritten flag.
Measured (2 shared CPU cores, resnet-20 3x28x28 b128): see benchmarks/bench_train.py for suite vs MXNet 1.9.1.
"""

import argparse
import functools
import logging
import math
import sys
import time
import types

import torch
import torch.nn.functional as F
from torch import nn

from common import (
    checkpoint,
    complexity,
    compression,
    data,
    dist,
    lr_find,
    memory,
    mixing,
    objective,
    options,
    qat,
    reporting,
    schedules,
    teachers,
)
from common.augment import DeviceTransform
from common.networks import cosine_head
from common.optim import init_weights, lr_schedule, lr_steps, make_optimizer, set_lr
from common.options import LOSSES, Augmentation
from common.util import UserError, choice_error, parse_shape

DTYPES = {"float32": None, "float16": torch.float16, "bfloat16": torch.bfloat16}


class Meter:
    """Metric sums kept on the device: [samples, loss, correct, top-k correct, cross-entropy]."""

    def __init__(self, device, top_k, ce):
        self.device, self.top_k, self.ce = device, top_k, ce
        self.sums = torch.zeros(5, dtype=torch.float64, device=device)

    def update(self, logits, label, loss):
        """Add one batch (no host sync); returns its row of sums."""
        logits = logits.detach().float()
        n = torch.full((), float(len(label)), device=self.device)  # a fill: no host-to-device copy, no sync
        zero = torch.zeros((), device=self.device)
        right = (logits.argmax(1) == label).sum()
        topk = (logits.topk(self.top_k, 1).indices == label[:, None]).any(1).sum() if self.top_k else zero
        ce = F.cross_entropy(logits, label, reduction="sum") if self.ce else zero
        row = torch.stack([n, loss.detach().float() * n, right.float(), topk.float(), ce])
        self.sums += row
        return row

    def add(self, row):
        """Add a batch's sums from another meter's update (the window shares the epoch meter's arithmetic)."""
        self.sums += row

    def read(self, loss_names, everywhere=False):
        """Host values {name: value} (syncs), as MXNet names them; everywhere: summed over all workers."""
        sums = dist.all_reduce_sum(self.sums.clone()) if everywhere else self.sums
        n, loss, right, topk, ce = sums.tolist()
        samples, n = n, max(n, 1.0)
        out = {"accuracy": right / n}
        if self.top_k:
            out[f"top_k_accuracy_{self.top_k}"] = topk / n
        for name in loss_names:
            out[name] = ce / n
        out["_loss"], out["_samples"] = loss / n, samples
        return out


def _fmt(values):
    return "".join(f"\t{k}={v:f}" for k, v in values.items() if not k.startswith("_"))


def train_one_epoch(ctx, epoch, train):
    """One pass over the training data; returns the epoch's metrics (host values)."""
    a, model = ctx.args, ctx.model
    model.train()
    for norm in ctx.frozen_norms:  # frozen layers (fine-tune --freeze-backbone) keep their statistics too
        norm.eval()
    ce = bool(ctx.loss_names)
    epoch_meter, window = Meter(ctx.device, a.top_k, ce), Meter(ctx.device, a.top_k, ce)
    tic, seen, nbatch, disp = time.time(), 0, len(train), a.disp_batches
    batches = ctx.progress(train, nbatch, epoch)  # a tqdm bar on a terminal: ETA, and loss/accuracy below
    held = []  # --sam-rho: the macro-batch's (network, x, target), for the step's second pass
    for i, (x, y) in enumerate(batches):
        if not len(x):  # every image of the batch failed to decode (counted by the iterator)
            if ctx.kv.num_workers > 1:  # a worker that skips a step would leave the others waiting in all-reduce
                raise UserError(f"epoch {epoch} batch {i}: no image of the batch decodes; check the data (verify-rec)")
            continue
        x, y = x.to(ctx.device, non_blocking=True), y.to(ctx.device, non_blocking=True)
        y = (y[:, 0] if y.dim() == 2 else y).long()  # multi-label records train on their first label
        x = ctx.train_tf(x)  # (N, C, H, W) float, normalised
        x, target = ctx.mix(x, y)  # mixing (common/mixing.py): soft targets; accuracy stays against y
        net = ctx.compiled if len(x) == ctx.batch else model  # a short last batch never recompiles
        logits, loss = _forward(ctx, net, x, target)
        ctx.scaler.scale(loss / ctx.accum).backward()
        held += [(net, x, target)] if a.sam_rho else []
        if (i + 1) % ctx.accum == 0 or i + 1 == nbatch:
            _update(ctx, model, functools.partial(_backward, ctx, held))
            held = []
        window.add(epoch_meter.update(logits, y, loss))
        ctx.profile.step()
        # MXNet's Speedometer: the clock starts after batch 0 and a line is due at every batch number (from 0) that
        # is a multiple of --disp-batches, so the first window [0-N] holds N+1 batches and no window ends the epoch
        seen = 0 if i == 0 else seen + len(x)
        if i and i % disp == 0:
            vals = window.read(ctx.loss_names)
            ctx.check_finite(vals["_loss"], epoch, f"batches {i - disp}-{i}")
            speed = seen * ctx.kv.share / max(time.time() - tic, 1e-9)  # an MXNet worker's: its processes together
            ctx.log(f"Epoch[{epoch}] Batch [{i - disp}-{i}]\tSpeed: {speed:.2f} samples/sec{_fmt(vals)}")
            reporting.show(batches, vals)  # values read back for this line: the bar adds no device sync
            ctx.board("batch", {"speed": speed, **vals}, epoch * nbatch + i)
            window, seen = Meter(ctx.device, a.top_k, ce), 0
        if i % disp == 0:
            tic = time.time()
        if a.monitor and (i + 1) % a.monitor == 0:
            for name, p in checkpoint.unwrap(model).named_parameters():
                ctx.log(f"Batch: {i + 1:7d} {name:40s} weight-norm={p.norm().item():f}")
    return epoch_meter.read(ctx.loss_names, everywhere=True)


def _forward(ctx, net, x, target):
    """(logits, training loss) of a batch under autocast; SAM's second pass repeats it on the same batch."""
    with torch.autocast(ctx.device.type, dtype=ctx.amp_dtype, enabled=ctx.amp_dtype is not None):
        logits = net(x)
        return logits, ctx.criterion(logits, target)  # common/objective.py


def _backward(ctx, batches):
    """Forward and backward of the macro-batch's (network, x, target) once more, scaled as the first pass."""
    for net, x, target in batches:
        ctx.scaler.scale(_forward(ctx, net, x, target)[1] / ctx.accum).backward()


def _update(ctx, model, again=None):
    """One optimizer step on the accumulated gradients (SAM's, clipped), then the rate of the next step and the EMA.

    again(): the macro-batch's forward and backward once more, for --sam-rho's second pass.
    """
    a, opt = ctx.args, ctx.opt
    if a.sam_rho and again is not None:
        _sharpness_aware(ctx, again)
    if a.clip_grad_norm:  # the true gradients: float16's loss scale off first (step() then leaves them)
        ctx.scaler.unscale_(opt)
        nn.utils.clip_grad_norm_([p for g in opt.param_groups for p in g["params"]], a.clip_grad_norm)
    ctx.scaler.step(opt)
    ctx.scaler.update()
    opt.zero_grad(set_to_none=True)
    ctx.step += 1
    set_lr(opt, a.lr * ctx.lr_mult(ctx.step))  # the rate for the next step
    if ctx.step in ctx.lr_drops:  # as MXNet's schedulers say it, numbering the update that first uses it
        ctx.log(f"Update[{ctx.step + 1}]: Change learning rate to {a.lr * ctx.lr_mult(ctx.step):0.5e}")
    if ctx.ema is not None:
        ctx.ema.update_parameters(model)


def _sharpness_aware(ctx, again):
    """SAM (Foret et al. 2021): the gradient g at the weights w becomes the gradient at w + rho * g / ||g||.

    Written here as no maintained library (torch, torchvision, timm) has it. ||g|| spans every parameter of the
    optimizer (the peer's too, --mutual-learning 2); float16's loss scale cancels in g / ||g||, and a first pass that
    overflowed makes the second one overflow, so the scaler skips the step as it would without SAM. The weights go
    back to w and the buffers (BatchNorm's running statistics) to their first-pass values by copy, so the step, the
    EMA and the checkpoint see w; distributed, both backward passes all-reduce.
    """
    params = [p for g in ctx.opt.param_groups for p in g["params"] if p.grad is not None]
    peer = getattr(ctx, "peer", None)
    buffers = [b for m in [ctx.raw] + ([peer.net] if peer else []) for b in m.buffers()]
    with torch.no_grad():
        kept = [t.clone() for t in params + buffers]  # copied back: w + e - e is not always w in floating point
        grads = [p.grad for p in params]
        norm = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads)))  # on the device: no host sync
        torch._foreach_mul_(grads, ctx.args.sam_rho / (norm + 1e-12))  # in place: set to None just below
        torch._foreach_add_(params, grads)
    ctx.opt.zero_grad(set_to_none=True)
    again()
    with torch.no_grad():
        torch._foreach_copy_(params + buffers, kept)


@torch.no_grad()
def evaluate(ctx, model, val):
    """Metrics of model on the validation data, summed over the workers' disjoint parts (each record once)."""
    model = checkpoint.unwrap(model)  # no DDP forward: workers' parts may differ by a batch
    model.eval()
    meter = Meter(ctx.device, ctx.args.top_k, bool(ctx.loss_names))
    for x, y in val:
        if not len(x):  # no image of the batch decodes (counted by the iterator); the others' sums are unaffected
            continue
        x, y = x.to(ctx.device, non_blocking=True), y.to(ctx.device, non_blocking=True)
        y = (y[:, 0] if y.dim() == 2 else y).long()
        with torch.autocast(ctx.device.type, dtype=ctx.amp_dtype, enabled=ctx.amp_dtype is not None):
            logits = model(ctx.val_tf(x))
        meter.update(logits, y, F.cross_entropy(logits.float(), y))
    return meter.read(ctx.loss_names, everywhere=True)


def run_epoch(ctx, epoch, train, val, first):
    """Train one epoch, validate, log MXNet's epoch lines; return its metrics record (nothing is saved here)."""
    args, tic = ctx.args, time.time()
    train.set_epoch(epoch)
    ctx.train_tf.set_epoch(epoch)
    ctx.mix.set_epoch(epoch)
    bad = (getattr(train, "bad_images", 0), getattr(val, "bad_images", 0))
    record = {"epoch": epoch, "lr": args.lr * ctx.lr_mult(ctx.step)}  # the rate the epoch starts at
    if ctx.qat is not None:  # torchvision's controls: observers, then folded BatchNorm statistics, freeze by epoch
        ctx.qat.start_epoch(epoch, first, ctx.log)
    metrics = train_one_epoch(ctx, epoch, train)
    _check_samples(metrics, epoch, "training", args.data_train, train, bad[0])
    ctx.check_finite(metrics["_loss"], epoch, "the epoch's mean")
    _log_metrics(ctx, epoch, "Train", metrics, record)
    ctx.log(f"Epoch[{epoch}] Time cost={time.time() - tic:.3f}")
    if val is not None:
        if ctx.qat is not None:  # the observers learn their ranges from training data only
            ctx.qat.observe(False)
        vals = evaluate(ctx, ctx.ema.module if ctx.ema is not None else ctx.model, val)
        if vals["_samples"]:  # else no image decoded: said below, and the epoch is kept without validation
            _log_metrics(ctx, epoch, "Validation", vals, record)
            ctx.check_finite(vals["_loss"], epoch, "validation")
    _log_skipped(ctx, epoch, first, (("training", train, bad[0]), ("validation", val, bad[1])))
    reporting.check_weights(args.model_prefix, ctx.raw, epoch)  # a diverged epoch is never saved
    record["time"] = time.time() - tic
    ctx.board("epoch", {k: v for k, v in record.items() if k != "epoch"}, epoch + 1)
    return record


def _announce(ctx, batch, device):
    """The total batch, rate and device line (and how a local launcher's workers share the batch)."""
    kv = ctx.kv
    ctx.log(
        f"Total batch size {batch * kv.num_workers * ctx.accum} ({batch} per batch x "
        f"{kv.num_workers} workers x {ctx.accum} accumulated), learning rate {ctx.args.lr:g}, on {device}"
        + (f", kv-store {kv.type} over {kv.num_hosts} hosts" if kv.num_workers > 1 else "")
    )
    if kv.local_size > 1 and kv.share == 1:
        ctx.log(
            f"each of the {kv.local_size} worker processes here trains --batch-size {batch}, as MXNet's local "
            "launcher ran them; tools/launch.py --split-batch makes them share it"
        )
    if kv.rank == 0:  # counted on the meta device: no arithmetic, well under a second (common/complexity.py)
        shape = parse_shape(ctx.args.image_shape)
        params, macs = complexity.count(ctx.raw, shape)  # the float network (--qat trains a fake-quantized graph of it)
        ctx.log(f"Complexity of one {','.join(map(str, shape))} image: {complexity.describe(params, macs)}")


def _check_samples(values, epoch, kind, path, it, bad_before):
    """Stop when no training image of the epoch decoded (summed over the workers): a run on nothing is no run."""
    if values["_samples"] == 0:
        raise UserError(
            f"epoch {epoch}: no {kind} image of {path or 'the data'} decodes "
            f"({data.skipped_note(it, bad_before)}); check it with tools/verify_rec.py"
        )


def _say_schedule_size(ctx, records):
    """MXNet sized its rate schedule by --num-examples; here it follows the data: say so when the two disagree."""
    given = ctx.args.num_examples
    if records and given and abs(given - records) > 0.01 * records and not ctx.args.benchmark:
        ctx.log(
            f"--num-examples {given} differs from the {records} records of the training data by more than 1%; "
            "the learning-rate schedule follows the data"
        )


def _log_skipped(ctx, epoch, first, parts):
    """One line per data (kind, iterator, undecodable count before the epoch) that skipped records this epoch."""
    for kind, it, before in parts:
        note = data.skipped_note(it, before, headers=first) if it is not None else ""
        if note:  # counted every epoch and said in the log, never silently
            ctx.log(f"Epoch[{epoch}] skipped in the {kind} data: {note}")


def _say_where(prefix, log_file, log):
    """The closing line: where the checkpoints, metrics, curve and log are (or that nothing was saved)."""
    if not prefix:
        log("done; nothing saved (give --model-prefix to keep checkpoints, metrics and a curve)")
        return
    log(
        f"done: checkpoints {prefix}-symbol.json and {prefix}-NNNN.params/.states, metrics {prefix}-metrics.jsonl, "
        f"curve {prefix}-curve.png, log {log_file}"
    )


def _log_metrics(ctx, epoch, kind, values, record):
    """MXNet's `Epoch[E] Train-name=value` (or Validation-) lines; the values go into record as train-name too,
    with the loss (train-loss, validation-loss) always."""
    for k, v in values.items():
        if not k.startswith("_"):
            ctx.log(f"Epoch[{epoch}] {kind}-{k}={v:f}")
            record[f"{kind.lower()}-{k}"] = v
    record[f"{kind.lower()}-loss"] = values["_loss"]  # the loss trained on, for the curve, with or without --loss


def fit(args, network, data_loader, *, pretrained=None, classes=None, defaults=None):
    """Train `network` (an nn.Module) on data_loader(args, kv) -> (train, val); checkpoints by --model-prefix.

    pretrained: a checkpoint.Pretrained when `network` holds trained weights (fine-tune.py): they are kept, not
    initialised, and PREFIX-symbol.json records the network they came from. classes: the class names, when the
    data's own source does not carry them. defaults: the script's flag defaults {name: value}; the start-up line
    shows what differs from them, the log file every setting. The entry script has started this host's workers.
    """
    args = options.complete(args)  # a program's own Namespace: the flags it lacks take their defaults
    kv = dist.get_kv(args)
    fmt = f"%(asctime)-15s Node[{kv.rank}] %(message)s"
    logging.basicConfig(level=logging.INFO, format=fmt)
    log_file = args.log_file or (f"{args.model_prefix}.log" if args.model_prefix else "")
    if kv.rank == 0:
        logging.info("start with arguments %s", reporting.changed_settings(args, defaults) or "(the defaults)")
        if log_file:
            handler = reporting.log_to_file(log_file, args, fmt, "--log-file" if args.log_file else "--model-prefix")
    device = dist.get_device(args.gpus, kv.local_rank, kv.local_size)
    batch = args.batch_size // kv.share  # the batch of one process; --batch-size is a worker's (a host's), as MXNet
    begin = dist.from_rank0(lambda: checkpoint.resolve_load_epoch(args.model_prefix, args.load_epoch))
    torch.manual_seed(args.seed)
    # a data loader makes batches of args.batch_size (MXNet's data_loader(args, kv), whose worker was one process)
    train, val = data_loader(argparse.Namespace(**dict(vars(args), batch_size=batch)), kv)
    if args.test_io:
        data.test_io(args, train, log=logging.info, device=device)
        return None
    ctx = _setup(args, kv, device, network, train, batch=batch, pretrained=pretrained)
    _say_schedule_size(ctx, getattr(train, "num", None))
    watch = schedules.Watch(ctx, validated=val is not None)  # --lr-plateau, --early-stop: before a resume loads them
    if begin:
        checkpoint.resume_training(ctx, begin, dist.from_rank0(lambda: checkpoint.read_blobs(args.model_prefix, begin)))
    set_lr(ctx.opt, args.lr * ctx.lr_mult(ctx.step))
    _announce(ctx, batch, device)
    if args.lr_find:  # a probe, as --test-io: the rate sweep on the training data; the model is left as it was
        lr_find.run(ctx, train, begin or 0, forward=_forward, update=_update)  # training's own forward and step
        return None
    if args.model_prefix and kv.rank == 0:
        # the data's own names (class folders, X.classes beside X.rec); outputs beyond them keep their numbers
        classes = getattr(getattr(train, "source", None), "classes", None) or classes
        if classes and len(classes) < args.num_classes:
            classes = list(classes) + [str(i) for i in range(len(classes), args.num_classes)]
        checkpoint.write_symbol_for(args, classes, pretrained, quantization=ctx.qat.record() if ctx.qat else None)
    for epoch in range(begin or 0, args.num_epochs):
        record = run_epoch(ctx, epoch, train, val, first=epoch == (begin or 0))
        stop = watch.after_epoch(epoch, record.get("validation-accuracy"))  # the plateau's rate, the early stop
        if args.model_prefix and kv.rank == 0:
            if (epoch + 1) % args.save_period == 0 or watch.must_save():
                checkpoint.save_training(ctx, epoch + 1)  # complete before the best moves or old epochs go
                checkpoint.note_best(args.model_prefix, epoch + 1, record.get("validation-accuracy"), ctx.log)
                checkpoint.keep_last(args.model_prefix, epoch + 1, args.keep_last, ctx.log)
                checkpoint.keep_peer(ctx)  # --mutual-learning 2: PREFIX-peer keeps the same epochs
            checkpoint.append_metrics(args.model_prefix, record, args.network)
        if stop:
            ctx.log(watch.stop_line(epoch))
            break
    ctx.profile.finish()
    if kv.rank == 0:
        _say_where(args.model_prefix, log_file, ctx.log)
        if log_file:
            logging.getLogger().removeHandler(handler)
            handler.close()
    model = checkpoint.unwrap(ctx.model)
    ctx = None  # the DDP wrapper and its reducer go before the process group they hold
    dist.cleanup()
    return model


def _setup(args, kv, device, network, train, *, batch=None, pretrained=None):
    """Model on the device, optimizer, AMP scaler, EMA, transforms and schedule, gathered in one namespace.

    batch: the batch of one process (default: --batch-size over this host's processes); pretrained: see fit().
    """
    batch = batch or args.batch_size // getattr(kv, "share", kv.local_size)
    if args.dtype not in DTYPES:
        raise choice_error("--dtype", args.dtype, DTYPES)
    loss_names = []
    for name in (n.strip() for n in (args.loss or "").split(",") if n.strip()):
        if name not in LOSSES:
            raise choice_error("--loss", name, LOSSES)
        loss_names.append(LOSSES[name])
    shape, aug = parse_shape(args.image_shape), Augmentation.of(args)
    conv = any(isinstance(m, nn.Conv2d) for m in network.modules())
    channels_last = bool(args.channels_last) and conv
    if args.loss_type == "am-softmax":  # the classifier becomes a cosine one (PREFIX-symbol.json records its scale)
        network = cosine_head(network, args.am_scale)
    if pretrained is None:  # fine-tune.py hands over trained weights
        init_weights(network, args.initializer, args.network)
    raw = network.to(device, memory_format=torch.channels_last if channels_last else torch.preserve_format)
    # --activation-checkpointing: blocks recompute their activations in backward (before DDP and compile see them)
    memory.apply(raw, args.activation_checkpointing, args.network, logging.info if kv.rank == 0 else logging.debug)
    quant = qat.for_run(args, raw, shape)  # --qat 1: a fake-quantized graph trains raw's own tensors (before DDP)
    model = quant.model if quant else raw
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        model = nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    compression.register(model, args.gc_type, args.gc_threshold, batch)
    batch_total = batch * kv.num_workers
    accum = math.ceil(args.macrobatch_size / batch_total) if args.macrobatch_size > batch_total else 1
    steps_per_epoch = math.ceil(len(train) / accum)
    ema = None
    if args.ema:
        from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

        ema = AveragedModel(raw, multi_avg_fn=get_ema_multi_avg_fn(args.ema), use_buffers=True)
    log = logging.info if kv.rank == 0 else logging.debug
    ctx = types.SimpleNamespace(
        args=args,
        kv=kv,
        batch=batch,
        pretrained=pretrained,
        device=device,
        raw=raw,
        model=model,
        compiled=torch.compile(model) if args.compile else model,
        opt=make_optimizer(args, raw),
        scaler=torch.amp.GradScaler(device.type, enabled=args.dtype == "float16"),
        amp_dtype=DTYPES[args.dtype],
        ema=ema,
        accum=accum,
        step=0,
        lr_mult=lr_schedule(args, steps_per_epoch, accum),
        lr_drops=set(lr_steps(args, steps_per_epoch)),
        frozen_norms=[m for m in (quant.model if quant else raw).modules() if _is_frozen_norm(m)],
        schedule=_schedule_text(args, steps_per_epoch, accum),
        loss_names=loss_names,
        mix=mixing.make_mixer(args, args.num_classes),
        # more training state saved in .states and restored on resume: {name: object with state_dict()}
        extra_states={"qat": quant} if quant else {},
        qat=quant,
        # --benchmark feeds one random batch: jitter on noise measures nothing, and MXNet's synthetic data has none
        train_tf=DeviceTransform(
            aug, shape, not args.benchmark, device, channels_last=channels_last, seed=args.seed, part=kv.rank
        ),
        val_tf=DeviceTransform(aug, shape, False, device, channels_last=channels_last, seed=args.seed),
        log=log,
        progress=reporting.progress if kv.rank == 0 and sys.stderr.isatty() else lambda it, n, e: it,
        board=reporting.board(args.tensorboard) if args.tensorboard and kv.rank == 0 else lambda *a: None,
        profile=reporting.Profile(args.profile_worker_suffix, args.profile_server_suffix, kv, device),
        check_finite=lambda v, e, where: reporting.check_finite(args.model_prefix, v, e, where),
    )
    # the loss, with a teacher or the peer (--mutual-learning 2 adds its parameter groups to the optimizer)
    ctx.peer = teachers.make_peer(args, raw, model, ctx.opt, device, fresh=pretrained is None)
    ctx.criterion = objective.make_criterion(args, teachers.load_teacher(args, model, device, log), ctx.peer)
    return ctx


def _is_frozen_norm(module):
    """A BatchNorm whose own parameters are all frozen (MXNet's fix_gamma alone freezes only gamma: it trains)."""
    own = list(module.parameters(recurse=False))
    return isinstance(module, nn.modules.batchnorm._BatchNorm) and bool(own) and not any(p.requires_grad for p in own)


def _schedule_text(args, steps_per_epoch, accum):
    """What the learning rate depends on, compared on resume to announce a change."""
    return {
        "optimizer": args.optimizer,
        "lr": args.lr,
        "lr_factor": args.lr_factor,
        "lr_step_epochs": args.lr_step_epochs,
        "cosine": args.cosine,
        "num_epochs": args.num_epochs,
        "steps_per_epoch": steps_per_epoch,
        "accumulation": accum,
        "warmup_epochs": args.warmup_epochs if accum > 1 else 0,
        "wd": args.wd,
        "mom": args.mom,
    }
