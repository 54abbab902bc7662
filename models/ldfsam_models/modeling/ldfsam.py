"""The LDFSAM network: a frozen SAM image encoder with adapters, a YOLOv8 prompt generator, feature
fusion, Dense and Sparse Feature Prompts, and SAM's prompt encoder and mask decoder."""
from typing import Dict, Optional, Tuple

import torch
from torch import nn

from ..losses import decode_distances, distances_to_boxes, make_anchors
from .feature_prompts import DenseFeaturePrompt, FeatureFusion, SparseFeaturePrompt
from .image_encoder import ImageEncoderViT
from .mask_decoder import MaskDecoder
from .prompt_encoder import PromptEncoder
from .yolo import YOLOv8


class LDFSAM(nn.Module):
    def __init__(
        self,
        *,
        image_encoder: ImageEncoderViT,
        prompt_encoder: PromptEncoder,
        mask_decoder: MaskDecoder,
        detector: YOLOv8,
        fusion: FeatureFusion,
        dense_prompt: DenseFeaturePrompt,
        sparse_prompt: SparseFeaturePrompt,
    ) -> None:
        super().__init__()
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

    def detector_box(self, p3: torch.Tensor, p4: torch.Tensor, p5: torch.Tensor, det_size: int) -> torch.Tensor:
        """The detector's highest-scoring box per image, (B, 4) as x1, y1, x2, y2 in pixels of SAM's
        input (scaled from the detector's input of side `det_size`), clamped to the image."""
        box_logits, cls_logits = self.detector.model[22]([p3, p4, p5])
        points, strides = make_anchors(det_size)
        boxes = distances_to_boxes(decode_distances(box_logits, self.detector.model[22].reg_max), points, strides)  # (B, A, 4)
        best = cls_logits.sigmoid().amax(1).argmax(1)  # (B,)
        top = boxes[torch.arange(boxes.shape[0]), best]
        side = self.prompt_encoder.input_image_size[0]
        return (top * (side / det_size)).clamp(0, side)

    def forward(
        self,
        sam_image: torch.Tensor,
        det_image: torch.Tensor,
        points: Optional[Tuple[torch.Tensor, torch.Tensor]] = None,
        boxes: Optional[torch.Tensor] = None,
        multimask_output: bool = False,
        with_detections: bool = False,
    ) -> Tuple[torch.Tensor, torch.Tensor, Dict[str, torch.Tensor]]:
        """`sam_image`: normalised (B, 3, S, S) for the encoder; `det_image`: (B, 3, Y, Y) in [0, 1] for
        the detector. Returns low-resolution mask logits (B, 1, 4G, 4G), predicted IoU, and the
        intermediates (image embedding, P3-P5, fused map; the detector's box and class logits with
        `with_detections`, which segmentation alone does not need) for training and tests."""
        z_img = self.image_encoder(sam_image)
        p3, p4, p5 = self.detector.features(det_image)
        fused = self.fusion(p3, p4, p5)
        z = self.dense_prompt(z_img, fused) if self.use_dense_prompt else z_img
        if self.use_box_prompt and boxes is None:
            boxes = self.detector_box(p3, p4, p5, det_image.shape[-1])
        sparse, dense = self.prompt_encoder(sam_image.shape[0], points=points, boxes=boxes)
        if self.use_sparse_prompt:
            sparse = torch.cat([sparse, self.sparse_prompt(fused)], dim=1)
        masks, iou = self.mask_decoder(z, self.prompt_encoder.get_dense_pe(), sparse, dense, multimask_output)
        aux = {"boxes": boxes, "z_img": z_img, "z_cond": z, "p3": p3, "p4": p4, "p5": p5, "fused": fused, "sparse_tokens": sparse}
        if with_detections:
            aux["box_logits"], aux["cls_logits"] = self.detector.model[22]([p3, p4, p5])
        return masks, iou, aux
