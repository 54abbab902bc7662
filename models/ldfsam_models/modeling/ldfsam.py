"""The LDFSAM network: a frozen SAM image encoder with adapters, a YOLOv8 prompt generator, feature
fusion, Dense and Sparse Feature Prompts, and SAM's prompt encoder and mask decoder; and SAM alone
(`PromptableSAM`), for a pretrained SAM used with user prompts only."""
from typing import Dict, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from ..losses import decode_distances, distances_to_boxes, make_anchors
from .feature_prompts import DenseFeaturePrompt, FeatureFusion, SparseFeaturePrompt
from .mask_decoder import MaskDecoder
from .prompt_encoder import PromptEncoder
from .yolo import YOLOv8


class LDFSAM(nn.Module):
    def __init__(
        self,
        *,
        image_encoder: nn.Module,
        prompt_encoder: PromptEncoder,
        mask_decoder: MaskDecoder,
        detector: YOLOv8,
        fusion: FeatureFusion,
        dense_prompt: DenseFeaturePrompt,
        sparse_prompt: SparseFeaturePrompt,
        embedding_scale: int = 1,
    ) -> None:
        """`embedding_scale`: the decoder's grid over the encoder's (lite: 64 / 32); the conditioned
        embedding is upsampled by it (bilinear) after the Dense Feature Prompt is added."""
        super().__init__()
        self.embedding_scale = embedding_scale
        self.image_encoder = image_encoder
        self.prompt_encoder = prompt_encoder
        self.mask_decoder = mask_decoder
        self.detector = detector
        self.fusion = fusion
        self.dense_prompt = dense_prompt
        self.sparse_prompt = sparse_prompt
        # Ablation switches (prompts: DFP only / SFP only / both); both on in the paper's model.
        self.use_dense_prompt = True
        self.use_sparse_prompt = True
        # Ablation baseline "box prompt from the detector": the detector's top-scoring box goes through
        # SAM's prompt encoder as a box prompt (used with both feature prompts off). Off in LDFSAM.
        self.use_box_prompt = False

    def detector_box(
        self, p3: torch.Tensor, p4: torch.Tensor, p5: torch.Tensor, det_size: int, head: Optional[Tuple[torch.Tensor, torch.Tensor]] = None
    ) -> torch.Tensor:
        """The detector's highest-scoring box per image, (B, 4) as x1, y1, x2, y2 in pixels of SAM's
        input (scaled from the detector's input of side `det_size`), clamped to the image. `head`: the
        detect head's (box, class) logits when already computed."""
        box_logits, cls_logits = head if head is not None else self.detector.model[22]([p3, p4, p5])
        points, strides = make_anchors(det_size)
        boxes = distances_to_boxes(decode_distances(box_logits, self.detector.model[22].reg_max), points, strides)  # (B, A, 4)
        best = cls_logits.sigmoid().amax(1).argmax(1)  # (B,)
        top = boxes[torch.arange(boxes.shape[0]), best]
        side = self.prompt_encoder.input_image_size[0]
        return (top * (side / det_size)).clamp(0, side)

    def embed(self, sam_image: torch.Tensor, det_image: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, Dict[str, torch.Tensor]]:
        """The per-image half (what a promptable export caches per slice): the conditioned embedding
        Z_cond on the decoder's grid, the K sparse feature tokens (B, K, C) (empty when switched off),
        and the intermediates."""
        z_img = self.image_encoder(sam_image)
        p3, p4, p5 = self.detector.features(det_image)
        fused = self.fusion(p3, p4, p5)
        z = self.dense_prompt(z_img, fused) if self.use_dense_prompt else z_img
        if self.embedding_scale != 1:
            z = F.interpolate(z, scale_factor=float(self.embedding_scale), mode="bilinear", align_corners=False)
        tokens = self.sparse_prompt(fused) if self.use_sparse_prompt else fused.new_zeros(fused.shape[0], 0, z.shape[1])
        return z, tokens, {"z_img": z_img, "z_cond": z, "feature_tokens": tokens, "p3": p3, "p4": p4, "p5": p5, "fused": fused}

    def decode(
        self,
        z: torch.Tensor,
        feature_tokens: torch.Tensor,
        points: Optional[Tuple[torch.Tensor, torch.Tensor]] = None,
        boxes: Optional[torch.Tensor] = None,
        masks: Optional[torch.Tensor] = None,
        multimask_output: bool = False,
    ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The per-prompt half: prompts (+ the feature tokens beside them) -> low-resolution logits,
        predicted IoU and the decoder's sparse tokens."""
        sparse, dense = self.prompt_encoder(z.shape[0], points=points, boxes=boxes, masks=masks)
        sparse = torch.cat([sparse, feature_tokens], dim=1)
        logits, iou = self.mask_decoder(z, self.prompt_encoder.get_dense_pe(), sparse, dense, multimask_output)
        return logits, iou, sparse

    def forward(
        self,
        sam_image: torch.Tensor,
        det_image: torch.Tensor,
        points: Optional[Tuple[torch.Tensor, torch.Tensor]] = None,
        boxes: Optional[torch.Tensor] = None,
        multimask_output: bool = False,
        with_detections: bool = False,
    ) -> Tuple[torch.Tensor, torch.Tensor, Dict[str, torch.Tensor]]:
        """`sam_image`: normalised (B, 3, E, E) for the encoder; `det_image`: (B, 3, Y, Y) in [0, 1] for
        the detector. Returns low-resolution mask logits (B, 1, 4G, 4G), predicted IoU, and the
        intermediates (image embedding, P3-P5, fused map; the detector's box and class logits with
        `with_detections`, which segmentation alone does not need) for training and tests."""
        z, tokens, aux = self.embed(sam_image, det_image)
        head = None
        if with_detections or (self.use_box_prompt and boxes is None):  # the detect head runs once
            head = self.detector.model[22]([aux["p3"], aux["p4"], aux["p5"]])
            aux["box_logits"], aux["cls_logits"] = head
        if self.use_box_prompt and boxes is None:
            boxes = self.detector_box(aux["p3"], aux["p4"], aux["p5"], int(det_image.shape[-1]), head)  # static: a fixed input side
        masks, iou, sparse = self.decode(z, tokens, points=points, boxes=boxes, multimask_output=multimask_output)
        aux.update(boxes=boxes, sparse_tokens=sparse)
        return masks, iou, aux


class PromptableSAM(nn.Module):
    """SAM's image encoder, prompt encoder and mask decoder, with no prompt generator: a pretrained SAM
    (LiteMedSAM) used with box, point and mask prompts only. Same `embed`/`decode` halves as LDFSAM,
    with no feature tokens."""

    def __init__(self, *, image_encoder: nn.Module, prompt_encoder: PromptEncoder, mask_decoder: MaskDecoder) -> None:
        super().__init__()
        self.image_encoder = image_encoder
        self.prompt_encoder = prompt_encoder
        self.mask_decoder = mask_decoder

    def embed(self, sam_image: torch.Tensor, det_image: Optional[torch.Tensor] = None):
        z = self.image_encoder(sam_image)
        return z, z.new_zeros(z.shape[0], 0, z.shape[1]), {"z_img": z}

    def decode(self, z, feature_tokens, points=None, boxes=None, masks=None, multimask_output: bool = False):
        sparse, dense = self.prompt_encoder(z.shape[0], points=points, boxes=boxes, masks=masks)
        sparse = torch.cat([sparse, feature_tokens], dim=1)
        logits, iou = self.mask_decoder(z, self.prompt_encoder.get_dense_pe(), sparse, dense, multimask_output)
        return logits, iou, sparse

    def forward(self, sam_image, det_image=None, points=None, boxes=None, masks=None, multimask_output: bool = False):
        z, tokens, aux = self.embed(sam_image)
        logits, iou, sparse = self.decode(z, tokens, points=points, boxes=boxes, masks=masks, multimask_output=multimask_output)
        aux.update(boxes=boxes, sparse_tokens=sparse)
        return logits, iou, aux
