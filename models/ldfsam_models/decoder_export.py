"""The promptable decoder as it is exported: the same prompt encoder and mask decoder as
`promptable.DecoderGraph` (the same parameters, read from the model, nothing copied into the state
dict), written in the shapes onnxruntime's CPU kernels run fastest. `export_promptable` exports this
graph and checks it against `DecoderGraph`, the reference that training uses.

The rewrites (each exact in real arithmetic; float32 rounding differs by summation order only):
- the cross attentions never project the image tokens: the few prompt tokens' projections are moved
  to the other side of each product (`attend_tokens_to_image`, `attend_image_to_tokens`), and the
  heads are block-diagonal masks instead of a head split and merge, so the image tokens are never
  transposed either. A product against the image then costs heads * tokens * C per image token
  instead of C * D for a projection: less below 16 tokens (the 5 output tokens + a box's 2 corners
  + up to 9 points), more above (16 points and a box, 23 tokens, measured as fast as before);
- image tokens stay channels-last (B, H*W, C) from the transformer to the mask;
- each 2x2, stride-2 `ConvTranspose2d` of `output_upscaling` is one Gemm per pixel (C -> 2*2*C'):
  the kernel never overlaps, so the transposed convolution is a per-pixel linear map plus a
  depth-to-space, left for the end (MLAS's GEMM instead of onnxruntime's ConvTranspose);
- `LayerNorm2d` between them becomes a LayerNormalization over the last (channel) axis (one fused
  kernel instead of ReduceMean/Sub/Pow/Div over the channel axis of an NCHW map);
- the final token-to-image attention runs for the IoU and mask tokens only (the prompt tokens' outputs
  are never read); the mask token is chosen (SAM's rule, `DecoderGraph._index`) before the last
  MatMul, so one mask is computed instead of four, and the depth-to-space of both upscaling steps is one Transpose of
  that single-channel result;
- `has_mask_input` and the no-mask embedding are folded into the last 1x1 convolution of
  `mask_downscaling` (its weight and bias), which writes the dense embedding channels-last.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .modeling.transformer import Attention, TwoWayAttentionBlock, TwoWayTransformer
from .promptable import DecoderGraph

FORM = ("ldfsam_models.decoder_export.ExportDecoderGraph: DecoderGraph with the cross attentions' projections on the prompt side, "
        "2x2 transposed convolutions as per-pixel Gemms, LayerNorm over channels-last pixels, one mask computed; the same "
        "function, checked against DecoderGraph (promptable.maxAbsDiff)")


def _head_mask(attn: Attention, like: torch.Tensor) -> torch.Tensor:
    """(heads, 1, width): 1 where a column of the inner width belongs to the head."""
    d, h = attn.internal_dim, attn.num_heads
    return (torch.arange(d) // (d // h) == torch.arange(h).unsqueeze(1)).to(like.dtype).unsqueeze(1)


def attend_tokens_to_image(attn: Attention, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """`attn(q, k, v)` for a few queries q (B, Nq, C) (the tokens) over the image tokens k, v (B, N, C),
    which are never projected: each head's projected queries sit in their own rows of a
    (B, heads * Nq, D) matrix, zero outside the head's columns (Qh), and
    scores = Qh (K Wk^T + bk)^T = (Qh Wk) K^T + a constant per row, which softmax ignores;
    A (V Wv^T + bv) = (A V) Wv^T + bv, as each row of A sums to 1."""
    qp = attn.q_proj(q)
    b, nq, _ = qp.shape
    h, d = attn.num_heads, attn.internal_dim
    mask = _head_mask(attn, qp)
    qk = (qp.unsqueeze(1) * mask).reshape(b, h * nq, d) @ attn.k_proj.weight
    scores = torch.softmax((qk @ k.transpose(1, 2)) / math.sqrt(d // h), dim=-1)
    out = (scores @ v) @ attn.v_proj.weight.t() + attn.v_proj.bias
    return attn.out_proj((out.reshape(b, h, nq, d) * mask).sum(dim=1))


def attend_image_to_tokens(attn: Attention, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """`attn(q, k, v)` for the image tokens q (B, N, C) over a few tokens k, v (B, Nk, C): the keys and
    values projected and spread over head-masked (B, heads * Nk, D) matrices (Kh, Vh), the image side
    never projected: scores = Q (Kh Wq)^T + Kh bq, and the output A (Vh Wo^T) + bo comes out with the
    heads merged."""
    kp, vp = attn.k_proj(k), attn.v_proj(v)
    b, nk, _ = kp.shape
    n, h, d = q.shape[1], attn.num_heads, attn.internal_dim
    mask = _head_mask(attn, kp)
    kh = (kp.unsqueeze(1) * mask).reshape(b, h * nk, d)
    vh = (vp.unsqueeze(1) * mask).reshape(b, h * nk, d)
    scores = (q @ (kh @ attn.q_proj.weight).transpose(1, 2) + (kh @ attn.q_proj.bias).unsqueeze(1)) / math.sqrt(d // h)
    weights = torch.softmax(scores.reshape(b, n, h, nk), dim=-1).reshape(b, n, h * nk)
    return weights @ (vh @ attn.out_proj.weight.t()) + attn.out_proj.bias


def two_way_block(block: TwoWayAttentionBlock, queries, keys, query_pe, key_pe):
    """`TwoWayAttentionBlock.forward` with the attentions above (the tokens' self-attention as it is)."""
    if block.skip_first_layer_pe:
        queries = block.self_attn(queries, queries, queries)
    else:
        q = queries + query_pe
        queries = queries + block.self_attn(q, q, queries)
    queries = block.norm1(queries)
    k = keys + key_pe  # both cross attentions' image side: keys change only at norm4
    queries = block.norm2(queries + attend_tokens_to_image(block.cross_attn_token_to_image, queries + query_pe, k, keys))
    queries = block.norm3(queries + block.mlp(queries))
    keys = block.norm4(keys + attend_image_to_tokens(block.cross_attn_image_to_token, k, queries + query_pe, queries))
    return queries, keys


def two_way(transformer: TwoWayTransformer, keys: torch.Tensor, key_pe: torch.Tensor, tokens: torch.Tensor, outputs: int):
    """`TwoWayTransformer.forward` on channels-last image tokens (B, H*W, C), returning only the first
    `outputs` tokens: the final attention treats each token on its own, and only the IoU and mask
    tokens are read after it."""
    queries = tokens
    for layer in transformer.layers:
        queries, keys = two_way_block(layer, queries, keys, tokens, key_pe)
    queries, tokens = queries[:, :outputs], tokens[:, :outputs]
    attn = attend_tokens_to_image(transformer.final_attn_token_to_image, queries + tokens, keys + key_pe, keys)
    return transformer.norm_final_attn(queries + attn), keys


def _pixel_linear(conv: nn.ConvTranspose2d, x: torch.Tensor) -> torch.Tensor:
    """A 2x2, stride-2 transposed convolution of pixels (N, C) -> (N * 4, C'), each pixel's four
    outputs in (dy, dx) order: one Gemm (2-D, so the bias is the Gemm's own)."""
    cin, cout = conv.in_channels, conv.out_channels
    if tuple(conv.kernel_size) != (2, 2) or tuple(conv.stride) != (2, 2) or tuple(conv.padding) != (0, 0) or conv.groups != 1:
        raise ValueError("only a 2x2, stride-2 ConvTranspose2d without padding is a per-pixel linear map")
    weight = conv.weight.permute(2, 3, 1, 0).reshape(4 * cout, cin)
    return F.linear(x, weight, conv.bias.repeat(4)).reshape(-1, cout)


def upscaled_mask(upscaling: nn.Sequential, keys: torch.Tensor, hyper: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """`hyper` (B, 1, C'') against `output_upscaling` of the image tokens `keys` (B, h*w, C): the one
    mask (B, 1, 4h, 4w), as `MaskDecoder.predict_all` computes each of its masks."""
    up1, norm, act1, up2, act2 = upscaling
    b, n, c = keys.shape
    x = _pixel_linear(up1, keys.reshape(b * n, c))
    x = act1(F.layer_norm(x, (up1.out_channels,), norm.weight, norm.bias, norm.eps))
    x = act2(_pixel_linear(up2, x)).reshape(b, n * 16, up2.out_channels)  # rows (y, x, dy1, dx1, dy2, dx2)
    mask = (x @ hyper.transpose(1, 2)).reshape(b, h, w, 2, 2, 2, 2)
    return mask.permute(0, 1, 3, 5, 2, 4, 6).reshape(b, 1, 4 * h, 4 * w)


class ExportDecoderGraph(DecoderGraph):
    """`DecoderGraph` rewritten for onnxruntime (see the module doc); same inputs, outputs and values."""

    def forward(self, image_embeddings, *rest):
        sparse, point_labels, mask_input, has = self._prompts(*rest)
        pe, dec = self.model.prompt_encoder, self.model.mask_decoder
        b, c, g = image_embeddings.shape[0], self.config.prompt_dim, self.config.grid
        output_tokens = torch.cat([dec.iou_token.weight, dec.mask_tokens.weight], dim=0).unsqueeze(0).expand(b, -1, -1)
        tokens = torch.cat([output_tokens, sparse], dim=1)
        keys = image_embeddings.reshape(b, c, g * g).transpose(1, 2) + self._dense(mask_input, has)
        key_pe = pe.get_dense_pe().reshape(1, c, g * g).transpose(1, 2)
        queries, keys = two_way(dec.transformer, keys, key_pe, tokens, 1 + dec.num_mask_tokens)
        iou = dec.iou_prediction_head(queries[:, 0, :])
        index = self._index(point_labels, iou)
        hyper = torch.stack([mlp(queries[:, 1 + i, :]) for i, mlp in enumerate(dec.output_hypernetworks_mlps)], dim=1)
        hyper = hyper.gather(1, index.view(-1, 1, 1).expand(-1, 1, hyper.shape[-1]))
        return self._to_input_frame(upscaled_mask(dec.output_upscaling, keys, hyper, g, g)), iou.gather(1, index.view(-1, 1))

    def _dense(self, mask_input: torch.Tensor, has: torch.Tensor) -> torch.Tensor:
        """The dense prompt embedding channels-last (B, G*G, C): `mask_downscaling(mask) * has +
        no_mask_embed * (1 - has)` with `has` and the no-mask embedding folded into the last 1x1
        convolution's weight and bias (one per-pixel linear map, no blend over the whole map)."""
        pe = self.model.prompt_encoder
        *features, last = pe.mask_downscaling
        y = nn.Sequential(*features)(mask_input)
        b, k = y.shape[0], last.in_channels
        has = has.view(-1, 1, 1)
        weight = last.weight.reshape(1, -1, k) * has  # (B, C, k)
        bias = last.bias.view(1, 1, -1) * has + pe.no_mask_embed.weight.view(1, 1, -1) * (1 - has)
        return y.reshape(b, k, -1).transpose(1, 2) @ weight.transpose(1, 2) + bias
