"""Losses: Dice + BCE, anchors and DFL decoding against the head, the task-aligned assignment on a
hand-worked case, the detection loss on a toy problem, and LD / VLR / logit KD."""
import math

import pytest
import torch
import torch.nn.functional as F

from ldfsam_models import losses as L
from ldfsam_models.modeling.yolo import YOLOv8

R = L.REG_MAX

# ------------------------------------------------------------------------------------------------
# Segmentation
# ------------------------------------------------------------------------------------------------


def test_dice_bce_known_value_and_perfect_prediction():
    target = torch.ones(1, 1, 2, 2)
    logits = torch.zeros(1, 1, 2, 2)  # p = 0.5 everywhere
    # Dice: 1 - (2 * 2 + 1) / (2 + 4 + 1) = 2/7; BCE: ln 2
    assert float(L.dice_bce_loss(logits, target)) == pytest.approx(2 / 7 + math.log(2), abs=1e-6)
    t = torch.zeros(2, 1, 8, 8)
    t[:, :, 2:6, 2:6] = 1
    assert float(L.dice_bce_loss((t * 2 - 1) * 30, t)) < 1e-6
    assert float(L.dice_bce_loss((1 - 2 * t) * 30, t)) > 10


def test_dice_bce_upsamples_low_res_logits():
    torch.manual_seed(0)
    t = (torch.rand(2, 1, 16, 16) > 0.5).float()
    low = torch.randn(2, 1, 4, 4, requires_grad=True)
    loss = L.dice_bce_loss(low, t)
    up = F.interpolate(low, size=(16, 16), mode="bilinear", align_corners=False)
    assert float(loss) == pytest.approx(float(L.dice_bce_loss(up, t)))
    loss.backward()
    assert low.grad.abs().sum() > 0


# ------------------------------------------------------------------------------------------------
# Anchors and decoding
# ------------------------------------------------------------------------------------------------


def test_anchors_follow_the_head_layout():
    points, strides = L.make_anchors(128)
    assert points.shape == (16 * 16 + 8 * 8 + 4 * 4, 2)
    assert points[0].tolist() == [4, 4] and points[1].tolist() == [12, 4]  # row-major: x first
    assert points[16].tolist() == [4, 12]
    assert points[256].tolist() == [8, 8] and strides[256] == 16
    assert points[-1].tolist() == [112, 112] and strides[-1] == 32
    model = YOLOv8(scale="n", nc=1).eval()
    with torch.no_grad():
        _, (box, cls) = model(torch.rand(1, 3, 128, 128))
    assert box.shape[-1] == cls.shape[-1] == points.shape[0]
    # our decoding is the head's own DFL layer
    torch.testing.assert_close(L.decode_distances(box), model.model[22].dfl(box).transpose(1, 2))


def test_overlaps():
    a = torch.tensor([0.0, 0, 10, 10])
    assert float(L.box_overlap(a, a, "ciou")) == pytest.approx(1.0)
    b = torch.tensor([5.0, 0, 15, 10])
    # IoU 50 / 150; centres 5 apart; enclosing 15 x 10 -> c^2 = 325
    assert float(L.box_overlap(a, b, "iou")) == pytest.approx(1 / 3)
    assert float(L.box_overlap(a, b, "diou")) == pytest.approx(1 / 3 - 25 / 325)


# ------------------------------------------------------------------------------------------------
# Assignment
# ------------------------------------------------------------------------------------------------


def test_task_aligned_assignment_hand_case():
    """One level (stride 8) on 32x32: 16 anchors at 4, 12, 20, 28. Zero box logits are uniform
    distributions (7.5 strides per edge): each predicted box is a 120 px square that contains both
    ground-truth boxes, so all alignments of a box tie and the distance tie-break decides.

    GT0 = whole image: all 16 anchors inside; top 10 by distance to (16, 16): the 4 central ones
    (5, 6, 9, 10), then 6 of the 8 at sqrt(160) in index order (1, 2, 4, 7, 8, 11).
    GT1 = [0, 16]^2: anchors 0, 1, 4, 5 inside. 1, 4, 5 are shared and go to GT0, whose IoU with
    the predicted box (1024 / 14400) beats GT1's (256 / 14400). GT1 keeps anchor 0."""
    box = torch.zeros(1, 4 * R, 16)
    cls = torch.zeros(1, 1, 16)
    gt = [torch.tensor([[0.0, 0, 32, 32], [0, 0, 16, 16]])]
    asg = L.assign(box, cls, gt, 32, strides=(8,))
    assert asg.positive[0].nonzero().squeeze(1).tolist() == [0, 1, 2, 4, 5, 6, 7, 8, 9, 10, 11]
    expected = [1, 0, 0, -1, 0, 0, 0, 0, 0, 0, 0, 0, -1, -1, -1, -1]
    assert asg.gt_index[0].tolist() == expected
    assert torch.equal(asg.target_boxes[0, 0], gt[0][1]) and torch.equal(asg.target_boxes[0, 5], gt[0][0])
    # aligned targets: equal alignments -> each positive gets its box's best IoU
    assert float(asg.target_scores[0, 5, 0]) == pytest.approx(1024 / 14400, rel=1e-4)
    assert float(asg.target_scores[0, 0, 0]) == pytest.approx(256 / 14400, rel=1e-4)
    assert float(asg.target_scores[0, 3, 0]) == 0.0
    one = L.assign(box, cls, gt, 32, strides=(8,), cls_target="one")
    assert one.target_scores[0, :, 0].tolist() == [float(i != -1) for i in expected]


def test_assignment_prefers_better_aligned_anchors():
    """Make anchor 15 (28, 28) predict GT's box exactly: it must be chosen first even with topk=1."""
    gt = [torch.tensor([[16.0, 16, 32, 32]])]  # anchors 10, 11, 14, 15 inside
    box = torch.zeros(1, 4 * R, 16)
    edges = box.view(1, 4, R, 16)
    # anchor 15 at (28, 28): left/top 12 px = 1.5 strides, right/bottom 4 px = 0.5 strides
    for e, d in enumerate((1.5, 1.5, 0.5, 0.5)):
        lo = int(d)
        edges[0, e, lo, 15] = edges[0, e, lo + 1, 15] = 50.0  # mass split evenly -> lo + 0.5
    asg = L.assign(box, torch.zeros(1, 1, 16), gt, 32, strides=(8,), topk=1)
    assert asg.positive[0].nonzero().squeeze(1).tolist() == [15]
    assert float(asg.pred_max_iou[0, 15]) == pytest.approx(1.0, abs=1e-4)


def test_no_ground_truth_gives_no_positives():
    box = torch.randn(2, 4 * R, 21, requires_grad=True)
    cls = torch.randn(2, 1, 21, requires_grad=True)
    loss, parts, asg = L.detection_loss(box, cls, [torch.zeros(0, 4), torch.zeros(0, 4)], 32, strides=(8, 16, 32))
    assert parts["num_pos"] == 0 and not asg.positive.any()
    assert torch.all(asg.prior_max_diou == -1)
    loss.backward()
    assert torch.isfinite(loss) and cls.grad.abs().sum() > 0


# ------------------------------------------------------------------------------------------------
# Detection loss on a toy problem
# ------------------------------------------------------------------------------------------------


def test_detection_loss_decreases_on_a_toy_problem():
    torch.manual_seed(0)
    model = YOLOv8(scale="n", nc=1)
    x = torch.rand(2, 3, 128, 128)
    x[:, :, 40:100, 30:90] += 1.0  # a bright square where the box is
    gt = [torch.tensor([[30.0, 40, 90, 100]])] * 2
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    losses, ious = [], []
    for _ in range(20):
        _, (box, cls) = model(x)
        loss, parts, asg = L.detection_loss(box, cls, gt, 128)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss))
        ious.append(float(asg.pred_max_iou[asg.positive].mean()))
        assert set(parts) == {"box", "cls", "dfl", "num_pos"} and parts["num_pos"] > 0
    assert sum(losses[-3:]) / 3 < 0.6 * sum(losses[:3]) / 3
    assert ious[-1] > max(ious[0], 0.6)  # the positives' boxes close in on the ground truth


# ------------------------------------------------------------------------------------------------
# VLR
# ------------------------------------------------------------------------------------------------


def _grid():
    """One level, stride 8, 32x32: anchor i * 4 + j at ((j + 0.5) 8, (i + 0.5) 8)."""
    return L.make_anchors(32, strides=(8,))


def test_vlr_hand_case():
    """GT = [4, 20]^2 (16 x 16, centre (12, 12) = anchor 5); prior boxes of side 2 x 8 = 16.
    - anchor 5: prior == GT, DIoU 1.
    - edge neighbours 1, 4, 6, 9 (8 px away): IoU 128 / 384, enclosing 24 x 16,
      DIoU = 1/3 - 64 / 832 = 0.2564.
    - diagonal neighbours 0, 2, 8, 10: IoU 64 / 448, enclosing 24 x 24, DIoU = 1/7 - 128 / 1152 = 0.0317.
    - the rest do not overlap: DIoU < 0."""
    points, strides = _grid()
    gt = torch.tensor([[4.0, 4, 20, 20]])
    d = L.max_prior_diou(points, strides, gt, anchor_scale=2)
    edge, diag = 1 / 3 - 64 / 832, 1 / 7 - 128 / 1152
    assert float(d[5]) == pytest.approx(1.0, abs=1e-6)
    for a in (1, 4, 6, 9):
        assert float(d[a]) == pytest.approx(edge, abs=1e-6)
    for a in (0, 2, 8, 10):
        assert float(d[a]) == pytest.approx(diag, abs=1e-6)
    assert all(float(d[a]) < 0 for a in (3, 7, 11, 12, 13, 14, 15))

    def selected(**kw):
        return L.vlr_mask(points, strides, gt, anchor_scale=2, **kw).nonzero().squeeze(1).tolist()

    assert selected(alpha_pos=0.5, gamma=0.5) == [1, 4, 6, 9]  # [0.25, 0.5)
    assert selected(alpha_pos=0.5, gamma=0.06) == [0, 1, 2, 4, 6, 8, 9, 10]  # [0.03, 0.5)
    assert selected(alpha_pos=0.25, gamma=0.5) == []
    assert selected(alpha_pos=1.01, gamma=0.9) == [5]  # [0.909, 1.01)
    positive = torch.zeros(16, dtype=torch.bool)
    positive[[4, 5]] = True
    assert selected(alpha_pos=0.5, gamma=0.5, positive=positive) == [1, 6, 9]  # positives excluded
    assert not L.vlr_mask(points, strides, torch.zeros(0, 4)).any()


def test_default_anchor_scale_is_atss_8():
    points, strides = L.make_anchors(64)
    priors = L.prior_boxes(points, strides)
    assert (priors[:, 2] - priors[:, 0]).tolist() == (strides * 8).tolist()


# ------------------------------------------------------------------------------------------------
# LD and KD
# ------------------------------------------------------------------------------------------------


def _masks(b, a):
    main = torch.zeros(b, a, dtype=torch.bool)
    vlr = torch.zeros(b, a, dtype=torch.bool)
    main[:, :3] = True
    vlr[:, 3:7] = True
    return main, vlr


def test_ld_is_zero_for_identical_distributions_and_positive_otherwise():
    torch.manual_seed(0)
    student = torch.randn(2, 4 * R, 10)
    main, vlr = _masks(2, 10)
    assert float(L.ld_loss(student, student.clone(), main, vlr)) == 0.0
    teacher = student + 0.5 * torch.randn_like(student)
    assert float(L.ld_loss(student, teacher, main, vlr)) > 0
    # differences outside both regions are ignored
    outside = student.clone()
    outside[..., 8:] += torch.randn_like(outside[..., 8:])
    assert float(L.ld_loss(student, outside, main, vlr)) == 0.0
    # the VLR only counts when given (ld-main vs ld-main-vlr)
    in_vlr = student.clone()
    in_vlr[..., 4] += 3 * torch.randn_like(in_vlr[..., 4])
    assert float(L.ld_loss(student, in_vlr, main, None)) == 0.0
    assert float(L.ld_loss(student, in_vlr, main, vlr)) > 0


def test_ld_matches_the_formula():
    torch.manual_seed(1)
    tau = 10.0
    s, t = torch.randn(1, 4 * R, 2), torch.randn(1, 4 * R, 2)
    main = torch.tensor([[True, True]])
    expected = 0.0
    for a in range(2):
        for e in range(4):
            ls = F.log_softmax(s[0, e * R : (e + 1) * R, a] / tau, 0)
            pt = F.softmax(t[0, e * R : (e + 1) * R, a] / tau, 0)
            expected += float(F.kl_div(ls, pt, reduction="sum")) * tau**2
    expected /= 2  # averaged over the two anchors, summed over edges
    assert float(L.ld_loss(s, t, main, None, tau=tau)) == pytest.approx(expected, rel=1e-5)
    loss, parts = L.ld_loss(s, t, main, torch.zeros_like(main), tau=tau, lambda_main=2.0, return_parts=True)
    assert float(loss) == pytest.approx(2 * expected, rel=1e-5) and parts["vlr"] == 0.0


def test_ld_gradient_reaches_only_the_student():
    torch.manual_seed(2)
    student = torch.randn(1, 4 * R, 6, requires_grad=True)
    teacher = torch.randn(1, 4 * R, 6, requires_grad=True)
    main, vlr = _masks(1, 6)
    L.ld_loss(student, teacher, main, vlr).backward()
    assert teacher.grad is None
    assert student.grad is not None and student.grad.abs().sum() > 0
    assert student.grad[..., 7:].abs().sum() == 0  # anchors outside the regions get nothing


def test_logit_kd():
    torch.manual_seed(3)
    s = torch.randn(2, 1, 12, requires_grad=True)
    t = torch.randn(2, 1, 12, requires_grad=True)
    assert float(L.logit_kd_loss(s, s.detach().clone())) == pytest.approx(0.0, abs=1e-7)
    loss = L.logit_kd_loss(s, t)
    assert float(loss) > 0
    loss.backward()
    assert t.grad is None and s.grad.abs().sum() > 0


def test_distillation_modes():
    torch.manual_seed(4)
    points, strides = _grid()
    box_s, box_t = torch.randn(1, 4 * R, 16, requires_grad=True), torch.randn(1, 4 * R, 16)
    cls_s, cls_t = torch.randn(1, 1, 16, requires_grad=True), torch.randn(1, 1, 16)
    _, _, asg = L.detection_loss(box_s, cls_s, [torch.tensor([[4.0, 4, 20, 20]])], 32, strides=(8,), anchor_scale=2)
    student, teacher = (box_s, cls_s), (box_t, cls_t)
    assert [m.value for m in L.DistillMode] == ["none", "kd", "ld-main", "ld-main-vlr"]
    assert float(L.distillation_loss("none", student, None, asg)) == 0.0
    kd = L.distillation_loss("kd", student, teacher, asg)
    assert float(kd) == pytest.approx(float(L.logit_kd_loss(cls_s, cls_t)))
    main = L.distillation_loss(L.DistillMode.LD_MAIN, student, teacher, asg)
    assert float(main) == pytest.approx(float(L.ld_loss(box_s, box_t, asg.positive, None)))
    vlr = L.vlr_from_diou(asg.prior_max_diou, positive=asg.positive)
    assert vlr.any() and not (vlr & asg.positive).any()
    both = L.distillation_loss("ld-main-vlr", student, teacher, asg)
    assert float(both) == pytest.approx(float(L.ld_loss(box_s, box_t, asg.positive, vlr)))
    assert float(both) > float(main)
    with pytest.raises(ValueError):
        L.distillation_loss("ld-main", student, None, asg)
    with pytest.raises(ValueError):
        L.distillation_loss("feature", student, teacher, asg)
