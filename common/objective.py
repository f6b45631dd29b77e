"""The training loss: make_criterion(args, teacher, peer) -> criterion(logits, target).

logits (N, K) are the network's outputs on its training batch; target is integer labels (N,) or soft targets
(N, K) whose rows sum to one (common/mixing.py). The returned loss is a scalar tensor:
  class term     softmax cross-entropy, or AM-softmax (--loss-type am-softmax: the network ends in a cosine
                 classifier, common/networks.py, and the target's logit is lowered by s*m), --label-smoothing on both
  teacher term   --distill-from: (1-a)*class + a*T^2*KL(teacher_T || student_T) (Hinton et al. 2015), the teacher
                 run without gradients on the batch the network took (common/teachers.py)
  peer term      --mutual-learning 2: the same form with the peer's output, both ways; see common/teachers.py
"""

import torch.nn.functional as F

from common.options import LOSS_TYPES
from common.util import choice_error


def class_loss(args):
    """The class term of --loss-type, with --label-smoothing: loss(logits, target) -> scalar."""
    smoothing = args.label_smoothing
    if args.loss_type == "softmax":
        return lambda logits, target: F.cross_entropy(logits.float(), target, label_smoothing=smoothing)
    if args.loss_type == "am-softmax":
        margin = args.am_scale * args.am_margin  # logits are s*cos: the target's becomes s*(cos - m)

        def am_softmax(logits, target):
            logits = logits.float()
            # soft targets (mixing) lower each class's logit by the margin in proportion to its weight
            weight = F.one_hot(target, logits.shape[1]) if target.dim() == 1 else target.float()
            return F.cross_entropy(logits - margin * weight, target, label_smoothing=smoothing)

        return am_softmax
    raise choice_error("--loss-type", args.loss_type, LOSS_TYPES)


def soft_kl(student, teacher, temperature):
    """T^2 * KL(softmax(teacher/T) || softmax(student/T)), the batch mean; gradients reach `student` only if given."""
    t = temperature
    log_p = F.log_softmax(student.float() / t, dim=1)
    log_q = F.log_softmax(teacher.float() / t, dim=1)
    return t * t * F.kl_div(log_p, log_q, log_target=True, reduction="batchmean")


def make_criterion(args, teacher=None, peer=None):
    """criterion(logits, target): the class term, plus a teacher's or the peer's weighted by --distill-alpha at
    --distill-temperature; teacher() and peer() give their logits on the batch the network last trained on."""
    base = class_loss(args)
    alpha, temp = args.distill_alpha, args.distill_temperature

    def distilled(logits, target):
        return (1 - alpha) * base(logits, target) + alpha * soft_kl(logits, teacher(), temp)

    def mutual(logits, target):
        other = peer()  # the peer's logits on the same batch, with gradients to the peer
        mine = (1 - alpha) * base(logits, target) + alpha * soft_kl(logits, other.detach(), temp)
        theirs = (1 - alpha) * base(other, target) + alpha * soft_kl(other, logits.detach(), temp)
        # the value is network 1's loss (logged, checked); the gradient reaches both (a NaN peer makes it NaN too)
        return mine + (theirs - theirs.detach())

    return mutual if peer is not None else distilled if teacher is not None else base
