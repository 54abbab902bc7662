"""Training losses: segmentation (Dice + BCE), YOLOv8-style detection (task-aligned assignment,
BCE + CIoU + DFL), and distillation of the detector (localization distillation on the main and
Valuable Localization Regions, as LDFSAM does following Zheng et al.'s LD, and logit KD for the
ablation).

Layout shared with `modeling/yolo.py`: ``box_logits`` (B, 4 * reg_max, A) hold, per anchor, the
logits of four distributions (edges left, top, right, bottom, in that order) over `reg_max` bins
(bin k = distance k strides from the anchor point); ``cls_logits`` (B, nc, A). Anchors are the
three levels (strides 8, 16, 32) concatenated, each level's grid row-major. Boxes are ``x1, y1,
x2, y2`` in input pixels (see `data.py` for the pixel-edge convention).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from enum import Enum
from typing import Dict, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from torch import Tensor

STRIDES: Tuple[int, ...] = (8, 16, 32)
REG_MAX = 16
# Side of an anchor's prior box, in strides, for the Valuable Localization Region. LD builds on
# GFL/ATSS, whose one square anchor per location has side 8 x stride (octave_base_scale = 8).
ANCHOR_SCALE = 8.0
# The VLR is DIoU in [gamma * alpha_pos, alpha_pos). ATSS sets alpha_pos per box (mean + std of the
# candidates' IoU); an anchor-free TAL head has no such threshold, so a fixed 0.5 (the classic
# positive IoU of anchor-based assigners) stands in for it.
ALPHA_POS = 0.5
GAMMA = 0.5
LD_TAU = 10.0
KD_TAU = 2.0

# --------------------------------------------------------------------------------------------------
# Segmentation
# --------------------------------------------------------------------------------------------------


def dice_bce_loss(logits: Tensor, target: Tensor, smooth: float = 1.0) -> Tensor:
    """Soft Dice + BCE-with-logits, weighted 1:1, averaged over the batch.

    `logits` and `target` are (B, 1, H, W); when the logits are smaller (LDFSAM's 64x64 low-res
    masks), they are upsampled bilinearly to the target's size first, as SAM upsamples its masks.
    Dice is per image, ``1 - (2 sum(p t) + smooth) / (sum p + sum t + smooth)``; the smoothing term
    makes an empty target with an empty prediction cost nothing instead of 0/0."""
    if logits.shape[-2:] != target.shape[-2:]:
        logits = F.interpolate(logits, size=target.shape[-2:], mode="bilinear", align_corners=False)
    target = target.to(logits.dtype)
    bce = F.binary_cross_entropy_with_logits(logits, target)
    p = torch.sigmoid(logits).flatten(1)
    t = target.flatten(1)
    dice = 1 - (2 * (p * t).sum(1) + smooth) / (p.sum(1) + t.sum(1) + smooth)
    return dice.mean() + bce


# --------------------------------------------------------------------------------------------------
# Anchors, DFL decoding, box overlaps
# --------------------------------------------------------------------------------------------------


def make_anchors(
    image_size: Union[int, Tuple[int, int]], strides: Sequence[int] = STRIDES, offset: float = 0.5
) -> Tuple[Tensor, Tensor]:
    """Anchor points (A, 2) as (x, y) in input pixels, cell centres ``((j + 0.5) s, (i + 0.5) s)``,
    and their strides (A,), levels in the head's order and each grid row-major, so index a of these
    is anchor a of the head's outputs. The image sides must be multiples of the largest stride."""
    h, w = (image_size, image_size) if isinstance(image_size, int) else image_size
    points, stride_list = [], []
    for s in strides:
        if h % s or w % s:
            raise ValueError(f"image size {(h, w)} is not a multiple of stride {s}")
        ys = (torch.arange(h // s, dtype=torch.float32) + offset) * s
        xs = (torch.arange(w // s, dtype=torch.float32) + offset) * s
        gy, gx = torch.meshgrid(ys, xs, indexing="ij")
        points.append(torch.stack([gx.reshape(-1), gy.reshape(-1)], 1))
        stride_list.append(torch.full((gx.numel(),), float(s)))
    return torch.cat(points), torch.cat(stride_list)


def edge_logits(box_logits: Tensor, reg_max: int = REG_MAX) -> Tensor:
    """(B, 4 * reg_max, A) -> (B, A, 4, reg_max): per anchor, per edge, the bin logits (the head's
    channel order, as DFL reads it)."""
    b, c, a = box_logits.shape
    if c != 4 * reg_max:
        raise ValueError(f"box logits have {c} channels, expected 4 x {reg_max}")
    return box_logits.view(b, 4, reg_max, a).permute(0, 3, 1, 2)


def decode_distances(box_logits: Tensor, reg_max: int = REG_MAX) -> Tensor:
    """Expected distance of each edge, in strides: (B, A, 4), the same as the head's DFL layer."""
    bins = torch.arange(reg_max, dtype=box_logits.dtype, device=box_logits.device)
    return (edge_logits(box_logits, reg_max).softmax(-1) * bins).sum(-1)


def distances_to_boxes(distances: Tensor, points: Tensor, strides: Tensor) -> Tensor:
    """Left/top/right/bottom distances in strides -> x1, y1, x2, y2 in pixels."""
    d = distances * strides[:, None]
    return torch.cat([points - d[..., :2], points + d[..., 2:]], -1)


def boxes_to_distances(boxes: Tensor, points: Tensor, strides: Tensor) -> Tensor:
    """Inverse of `distances_to_boxes` (distances may fall outside [0, reg_max - 1])."""
    return torch.cat([points - boxes[..., :2], boxes[..., 2:] - points], -1) / strides[:, None]


def box_overlap(a: Tensor, b: Tensor, kind: str = "iou", eps: float = 1e-7) -> Tensor:
    """IoU, DIoU or CIoU of boxes broadcast against each other (``a[:, None], b[None]`` for pairs).

    DIoU = IoU - d^2 / c^2 (d: centre distance, c: diagonal of the enclosing box), in (-1, 1].
    CIoU = DIoU - alpha v with v the aspect-ratio term; alpha is computed without gradient, as the
    CIoU paper treats it as a constant."""
    ax1, ay1, ax2, ay2 = a.unbind(-1)
    bx1, by1, bx2, by2 = b.unbind(-1)
    iw = (torch.minimum(ax2, bx2) - torch.maximum(ax1, bx1)).clamp(min=0)
    ih = (torch.minimum(ay2, by2) - torch.maximum(ay1, by1)).clamp(min=0)
    inter = iw * ih
    wa, ha, wb, hb = ax2 - ax1, ay2 - ay1, bx2 - bx1, by2 - by1
    iou = inter / (wa * ha + wb * hb - inter + eps)
    if kind == "iou":
        return iou
    cw = torch.maximum(ax2, bx2) - torch.minimum(ax1, bx1)
    ch = torch.maximum(ay2, by2) - torch.minimum(ay1, by1)
    c2 = cw**2 + ch**2 + eps
    d2 = ((ax1 + ax2 - bx1 - bx2) ** 2 + (ay1 + ay2 - by1 - by2) ** 2) / 4
    diou = iou - d2 / c2
    if kind == "diou":
        return diou
    if kind != "ciou":
        raise ValueError(f"unknown overlap {kind!r}")
    v = (4 / math.pi**2) * (torch.atan(wb / (hb + eps)) - torch.atan(wa / (ha + eps))) ** 2
    with torch.no_grad():
        alpha = v / (v - iou + (1 + eps))
    return diou - alpha * v


def prior_boxes(points: Tensor, strides: Tensor, anchor_scale: float = ANCHOR_SCALE) -> Tensor:
    """Square prior box of side ``anchor_scale * stride`` centred on each anchor point (the
    ATSS-style anchor the VLR is measured with; the anchor-free head itself has no priors)."""
    half = (anchor_scale * strides / 2)[:, None]
    return torch.cat([points - half, points + half], 1)


def max_prior_diou(points: Tensor, strides: Tensor, gt_boxes: Tensor, anchor_scale: float = ANCHOR_SCALE) -> Tensor:
    """Per anchor, the largest DIoU of its prior box with any ground-truth box; -1 (the lowest
    possible DIoU) when there is no box."""
    if gt_boxes.numel() == 0:
        return torch.full((points.shape[0],), -1.0, device=points.device)
    priors = prior_boxes(points, strides, anchor_scale)
    return box_overlap(priors[:, None], gt_boxes[None].to(priors), "diou").amax(1)


def vlr_mask(
    anchor_points: Tensor,
    strides: Tensor,
    gt_boxes: Tensor,
    alpha_pos: float = ALPHA_POS,
    gamma: float = GAMMA,
    anchor_scale: float = ANCHOR_SCALE,
    positive: Optional[Tensor] = None,
) -> Tensor:
    """Valuable Localization Region of one image: anchors whose prior box's max DIoU with the
    ground truth lies in ``[gamma * alpha_pos, alpha_pos)``, minus the `positive` anchors (the main
    region) when given. (A,) bool."""
    d = max_prior_diou(anchor_points, strides, gt_boxes, anchor_scale)
    return vlr_from_diou(d, alpha_pos, gamma, positive)


def vlr_from_diou(
    max_diou: Tensor, alpha_pos: float = ALPHA_POS, gamma: float = GAMMA, positive: Optional[Tensor] = None
) -> Tensor:
    """The VLR from precomputed max DIoUs (any shape), e.g. `Assignment.prior_max_diou`."""
    sel = (max_diou >= gamma * alpha_pos) & (max_diou < alpha_pos)
    return sel & ~positive if positive is not None else sel


# --------------------------------------------------------------------------------------------------
# Task-aligned assignment and the detection loss
# --------------------------------------------------------------------------------------------------


@dataclass
class Assignment:
    """Per-anchor result of the assignment for a batch (B images, A anchors, nc classes)."""

    positive: Tensor  # (B, A) bool: the main region
    gt_index: Tensor  # (B, A) long: assigned box of the image, -1 for negatives
    target_boxes: Tensor  # (B, A, 4) pixels, zeros for negatives
    target_scores: Tensor  # (B, A, nc) classification targets
    pred_max_iou: Tensor  # (B, A) max IoU of the (detached) predicted box with any GT; 0 without GT
    prior_max_diou: Tensor  # (B, A) max DIoU of the prior box with any GT; -1 without GT
    anchor_points: Tensor  # (A, 2)
    strides: Tensor  # (A,)


def _assign_one(
    scores: Tensor,
    pred_boxes: Tensor,
    points: Tensor,
    gt_boxes: Tensor,
    gt_labels: Tensor,
    topk: int,
    alpha: float,
    beta: float,
    cls_target: str,
    eps: float = 1e-9,
) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
    """TAL for one image: (positive (A,), gt index (A,), target scores (A, nc), max IoU (A,)).

    Candidates of a box are the anchors whose point lies strictly inside it. Each box takes the
    `topk` candidates with the highest alignment ``score^alpha * IoU^beta`` (score: the predicted
    probability of the box's class; IoU: of the predicted box), ties broken by distance to the box
    centre so an untrained detector still gets its central anchors. An anchor taken by several boxes
    goes to the one its predicted box overlaps most.

    cls_target 'aligned' (TAL's): a positive's target is its alignment divided by the best alignment
    among its box's positives, times the best IoU among them, so targets track localisation quality;
    'one': every positive's target is 1."""
    a, n = points.shape[0], gt_boxes.shape[0]
    nc, dev = scores.shape[1], points.device
    if n == 0:
        none = torch.zeros(a, dtype=torch.bool, device=dev)
        return none, torch.full((a,), -1, dtype=torch.long, device=dev), torch.zeros(a, nc, device=dev), torch.zeros(a, device=dev)
    iou = box_overlap(gt_boxes[:, None], pred_boxes[None]).clamp(min=0)  # (N, A)
    lt = points[None] - gt_boxes[:, None, :2]
    rb = gt_boxes[:, None, 2:] - points[None]
    inside = torch.cat([lt, rb], -1).amin(-1) > eps  # (N, A)
    metric = scores[:, gt_labels].T.pow(alpha) * iou.pow(beta) * inside
    centre = (gt_boxes[:, :2] + gt_boxes[:, 2:]) / 2
    by_distance = (points[None] - centre[:, None]).pow(2).sum(-1).sort(dim=1, stable=True).indices  # (N, A)
    key = torch.where(inside, metric, torch.full_like(metric, -1.0)).gather(1, by_distance)
    ranked = by_distance.gather(1, key.sort(dim=1, descending=True, stable=True).indices[:, : min(topk, a)])
    chosen = torch.zeros(n, a, dtype=torch.bool, device=dev)
    chosen.scatter_(1, ranked, inside.gather(1, ranked))
    positive = chosen.any(0)
    best = torch.where(chosen, iou, torch.full_like(iou, -1.0)).argmax(0)  # resolve by highest IoU
    owner = torch.zeros_like(chosen)
    owner[best[positive], positive.nonzero().squeeze(1)] = True
    gt_index = torch.where(positive, best, torch.full_like(best, -1))
    if cls_target == "aligned":
        m = metric * owner
        norm = m / m.amax(1, keepdim=True).clamp(min=1e-30) * (iou * owner).amax(1, keepdim=True)
        quality = norm.amax(0)
    elif cls_target == "one":
        quality = positive.float()
    else:
        raise ValueError(f"unknown cls_target {cls_target!r}")
    target_scores = torch.zeros(a, nc, device=dev)
    pos_idx = positive.nonzero().squeeze(1)
    target_scores[pos_idx, gt_labels[best[pos_idx]]] = quality[pos_idx]
    return positive, gt_index, target_scores, iou.amax(0)


@torch.no_grad()
def assign(
    box_logits: Tensor,
    cls_logits: Tensor,
    gt_boxes: Sequence[Tensor],
    image_size: Union[int, Tuple[int, int]],
    gt_labels: Optional[Sequence[Tensor]] = None,
    *,
    reg_max: int = REG_MAX,
    strides: Sequence[int] = STRIDES,
    topk: int = 10,
    alpha: float = 0.5,
    beta: float = 6.0,
    cls_target: str = "aligned",
    anchor_scale: float = ANCHOR_SCALE,
) -> Assignment:
    """Task-aligned assignment of a batch (see `_assign_one`), on detached predictions. `gt_labels`
    default to class 0 for every box (one-class detectors)."""
    dev = box_logits.device
    points, stride_t = (t.to(dev) for t in make_anchors(image_size, strides))
    b, _, a = box_logits.shape
    if a != points.shape[0]:
        raise ValueError(f"{a} anchors in the head's output, {points.shape[0]} for image size {image_size}")
    pred = distances_to_boxes(decode_distances(box_logits.detach().float(), reg_max), points, stride_t)
    scores = cls_logits.detach().float().sigmoid().transpose(1, 2)  # (B, A, nc)
    outs = []
    for i in range(b):
        boxes = gt_boxes[i].detach().to(dev, torch.float32).reshape(-1, 4)
        labels = torch.zeros(len(boxes), dtype=torch.long, device=dev) if gt_labels is None else gt_labels[i].to(dev).long()
        pos, idx, ts, miou = _assign_one(scores[i], pred[i], points, boxes, labels, topk, alpha, beta, cls_target)
        tb = torch.zeros(a, 4, device=dev)
        tb[pos] = boxes[idx[pos]]
        outs.append((pos, idx, tb, ts, miou, max_prior_diou(points, stride_t, boxes, anchor_scale)))
    stack = lambda k: torch.stack([o[k] for o in outs])  # noqa: E731
    return Assignment(stack(0), stack(1), stack(2), stack(3), stack(4), stack(5), points, stride_t)


def dfl_loss(edge_logit: Tensor, target: Tensor, reg_max: int = REG_MAX) -> Tensor:
    """Distribution Focal Loss per anchor (mean over its 4 edges): cross-entropy towards the two
    bins around each target distance (in strides), weighted by proximity, so the distribution's
    mass concentrates where linear interpolation of the bins gives the target. (P, 4, R), (P, 4)."""
    t = target.clamp(0, reg_max - 1 - 0.01)
    left = t.floor().long()
    w_right = t - left
    logp = edge_logit.log_softmax(-1)
    lp_left = logp.gather(-1, left[..., None]).squeeze(-1)
    lp_right = logp.gather(-1, (left + 1)[..., None]).squeeze(-1)
    return -(lp_left * (1 - w_right) + lp_right * w_right).mean(-1)


def detection_loss(
    box_logits: Tensor,
    cls_logits: Tensor,
    gt_boxes: Sequence[Tensor],
    image_size: Union[int, Tuple[int, int]],
    gt_labels: Optional[Sequence[Tensor]] = None,
    *,
    reg_max: int = REG_MAX,
    strides: Sequence[int] = STRIDES,
    topk: int = 10,
    cls_target: str = "aligned",
    box_weight: float = 7.5,
    cls_weight: float = 0.5,
    dfl_weight: float = 1.5,
    anchor_scale: float = ANCHOR_SCALE,
) -> Tuple[Tensor, Dict[str, float], Assignment]:
    """YOLOv8-style loss of the head's raw outputs against boxes in input pixels.

    loss = box_weight * CIoU + cls_weight * BCE + dfl_weight * DFL (YOLOv8's gains 7.5 / 0.5 / 1.5):
    - BCE with logits on every anchor and class against `Assignment.target_scores`;
    - 1 - CIoU of the decoded boxes and DFL of the bin distributions, on positives only, each
      positive weighted by its classification target (its localisation quality);
    - all three summed and divided by the batch's sum of target scores (at least 1), so the scale
      does not depend on how many anchors are positive.
    Returns (loss, parts as floats: box, cls, dfl, num_pos; the assignment)."""
    asg = assign(
        box_logits, cls_logits, gt_boxes, image_size, gt_labels,
        reg_max=reg_max, strides=strides, topk=topk, cls_target=cls_target, anchor_scale=anchor_scale,
    )
    norm = asg.target_scores.sum().clamp(min=1.0)
    cls_loss = F.binary_cross_entropy_with_logits(
        cls_logits.transpose(1, 2), asg.target_scores.to(cls_logits.dtype), reduction="sum"
    ) / norm
    pos = asg.positive
    if pos.any():
        weight = asg.target_scores.sum(-1)[pos]
        edges = edge_logits(box_logits, reg_max)[pos]  # (P, 4, R)
        dist = (edges.softmax(-1) * torch.arange(reg_max, dtype=edges.dtype, device=edges.device)).sum(-1)
        anchor_idx = pos.nonzero()[:, 1]
        pts, st = asg.anchor_points[anchor_idx], asg.strides[anchor_idx]
        pred_boxes = distances_to_boxes(dist, pts, st)
        target = asg.target_boxes[pos]
        box_loss = ((1 - box_overlap(pred_boxes, target, "ciou")) * weight).sum() / norm
        dfl = (dfl_loss(edges, boxes_to_distances(target, pts, st), reg_max) * weight).sum() / norm
    else:
        box_loss = dfl = box_logits.sum() * 0.0  # keeps the graph, no gradient
    loss = box_weight * box_loss + cls_weight * cls_loss + dfl_weight * dfl
    parts = {"box": float(box_loss), "cls": float(cls_loss), "dfl": float(dfl), "num_pos": int(pos.sum())}
    return loss, parts, asg


# --------------------------------------------------------------------------------------------------
# Distillation
# --------------------------------------------------------------------------------------------------


class DistillMode(str, Enum):
    """Ablation of the detector's distillation: no teacher, logit KD on class scores, LD on the main
    (positive) region, LD on the main region and the Valuable Localization Region."""

    NONE = "none"
    KD = "kd"
    LD_MAIN = "ld-main"
    LD_MAIN_VLR = "ld-main-vlr"


def ld_kl_per_anchor(student_box_logits: Tensor, teacher_box_logits: Tensor, tau: float = LD_TAU, reg_max: int = REG_MAX) -> Tensor:
    """(B, A): KL(softmax(teacher / tau) || softmax(student / tau)) * tau^2, summed over the four
    edges. The teacher is detached: no gradient ever reaches it."""
    s = edge_logits(student_box_logits, reg_max) / tau
    t = edge_logits(teacher_box_logits.detach(), reg_max) / tau
    log_ps, log_pt = s.log_softmax(-1), t.log_softmax(-1)
    kl = (log_pt.exp() * (log_pt - log_ps)).sum(-1)  # (B, A, 4)
    return kl.sum(-1) * tau**2


def _region_mean(values: Tensor, mask: Optional[Tensor]) -> Tensor:
    """Mean of `values` over the anchors of `mask`; 0 (still in the graph) for an empty region."""
    if mask is None:
        return values.sum() * 0.0
    m = mask.to(values.dtype)
    return (values * m).sum() / m.sum().clamp(min=1.0)


def ld_loss(
    student_box_logits: Tensor,
    teacher_box_logits: Tensor,
    main_mask: Tensor,
    vlr_mask: Optional[Tensor] = None,
    tau: float = LD_TAU,
    lambda_main: float = 1.0,
    lambda_vlr: float = 1.0,
    reg_max: int = REG_MAX,
    return_parts: bool = False,
):
    """Localization distillation: ``lambda_main * mean_main(KL) + lambda_vlr * mean_vlr(KL)`` with
    the per-anchor KL of `ld_kl_per_anchor` (temperature `tau` = 10, scaled by tau^2), each region
    averaged over its own anchors ((B, A) bool masks; `vlr_mask` None for LD on the main region
    only). Student and teacher must share the anchor layout (same input size and strides).
    With `return_parts`, returns (loss, {'main': float, 'vlr': float})."""
    kl = ld_kl_per_anchor(student_box_logits, teacher_box_logits, tau, reg_max)
    main = _region_mean(kl, main_mask)
    vlr = _region_mean(kl, vlr_mask)
    loss = lambda_main * main + lambda_vlr * vlr
    if return_parts:
        return loss, {"main": float(main), "vlr": float(vlr)}
    return loss


def logit_kd_loss(
    student_cls_logits: Tensor, teacher_cls_logits: Tensor, tau: float = KD_TAU, mask: Optional[Tensor] = None
) -> Tensor:
    """Logit KD on the (sigmoid) class scores, the ablation's "logit KD": per anchor and class the
    Bernoulli KL(sigmoid(t / tau) || sigmoid(s / tau)) * tau^2, summed over classes and averaged over
    the anchors of `mask` ((B, A) bool; None = every anchor). A softmax over one class would be
    constant, hence the binary form. The teacher is detached."""
    s = student_cls_logits / tau
    t = teacher_cls_logits.detach() / tau
    pt = torch.sigmoid(t)
    kl = pt * (F.logsigmoid(t) - F.logsigmoid(s)) + (1 - pt) * (F.logsigmoid(-t) - F.logsigmoid(-s))
    per_anchor = kl.sum(1) * tau**2  # (B, A)
    if mask is None:
        return per_anchor.mean()
    return _region_mean(per_anchor, mask)


def distillation_loss(
    mode: Union[str, DistillMode],
    student: Tuple[Tensor, Tensor],
    teacher: Optional[Tuple[Tensor, Tensor]],
    assignment: Assignment,
    *,
    alpha_pos: float = ALPHA_POS,
    gamma: float = GAMMA,
    ld_tau: float = LD_TAU,
    kd_tau: float = KD_TAU,
    lambda_main: float = 1.0,
    lambda_vlr: float = 1.0,
) -> Tensor:
    """The distillation term of one ablation setting. `student` and `teacher` are (box_logits,
    cls_logits) at the same input size; `assignment` is the student's (its positives are the main
    region, its prior DIoUs give the VLR)."""
    mode = DistillMode(mode)
    if mode is DistillMode.NONE:
        return student[0].sum() * 0.0
    if teacher is None:
        raise ValueError(f"distillation mode {mode.value!r} needs a teacher")
    if mode is DistillMode.KD:
        return logit_kd_loss(student[1], teacher[1], kd_tau)
    vlr = None
    if mode is DistillMode.LD_MAIN_VLR:
        vlr = vlr_from_diou(assignment.prior_max_diou, alpha_pos, gamma, assignment.positive)
    return ld_loss(student[0], teacher[0], assignment.positive, vlr, ld_tau, lambda_main, lambda_vlr)
