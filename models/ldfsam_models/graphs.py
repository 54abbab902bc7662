"""Measures one ONNX graph against three (image encoder / prompt generator / mask decoder) in
onnxruntime, same weights, same inputs, alternating runs: `python -m ldfsam_models graphs --config tiny`."""
import pathlib
import tempfile
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .configs import LDFSAMConfig, build_ldfsam
from .export import OPSET, PIXEL_MEAN, PIXEL_STD, export_onnx


class EncoderPart(nn.Module):
    def __init__(self, model, config):
        super().__init__()
        self.model, self.config = model, config
        self.register_buffer("mean", torch.tensor(PIXEL_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(PIXEL_STD).view(1, 3, 1, 1))

    def forward(self, image):
        return self.model.image_encoder((image * 255.0 - self.mean) / self.std)


class PromptPart(nn.Module):
    def __init__(self, model, config):
        super().__init__()
        self.model, self.config = model, config

    def forward(self, image):
        c = self.config
        det = (
            image
            if c.detector_size == c.image_size
            else F.interpolate(image, scale_factor=c.detector_size / c.image_size, mode="bilinear", align_corners=False)
        )
        fused = self.model.fusion(*self.model.detector.features(det))
        return self.model.dense_prompt.alpha * self.model.dense_prompt.head(fused), self.model.sparse_prompt(fused)


class DecoderPart(nn.Module):
    def __init__(self, model, config):
        super().__init__()
        self.model, self.config = model, config

    def forward(self, z_img, dense, tokens):
        m = self.model
        _, no_mask = m.prompt_encoder(z_img.shape[0])
        masks, iou = m.mask_decoder(z_img + dense, m.prompt_encoder.get_dense_pe(), tokens, no_mask)
        return F.interpolate(masks, scale_factor=self.config.image_size / (4 * self.config.grid), mode="bilinear", align_corners=False), iou


def _export(module, inputs, names, outputs, path):
    with torch.no_grad():
        torch.onnx.export(module.eval(), inputs, str(path), opset_version=OPSET, input_names=names, output_names=outputs)


def measure(config: LDFSAMConfig, rounds: int = 10) -> dict:
    import onnxruntime as ort

    torch.manual_seed(0)
    model = build_ldfsam(config).eval()
    s = config.image_size
    image = torch.rand(1, 3, s, s)
    with tempfile.TemporaryDirectory() as tmp:
        d = pathlib.Path(tmp)
        export_onnx(model, config, d / "one.onnx")
        enc, prm, dec = EncoderPart(model, config), PromptPart(model, config), DecoderPart(model, config)
        with torch.no_grad():
            z = enc(image)
            dense, tokens = prm(image)
        _export(enc, (image,), ["image"], ["z_img"], d / "enc.onnx")
        _export(prm, (image,), ["image"], ["dense", "tokens"], d / "prm.onnx")
        _export(dec, (z, dense, tokens), ["z_img", "dense", "tokens"], ["mask_logits", "iou"], d / "dec.onnx")
        opts = ort.SessionOptions()
        opts.intra_op_num_threads, opts.inter_op_num_threads = 2, 1
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        sess = {n: ort.InferenceSession(str(d / f"{n}.onnx"), opts, providers=["CPUExecutionProvider"]) for n in ("one", "enc", "prm", "dec")}
        x = image.numpy()

        def one():
            return sess["one"].run(None, {"image": x})

        def three():
            z_ = sess["enc"].run(None, {"image": x})[0]
            de, to = sess["prm"].run(None, {"image": x})
            return sess["dec"].run(None, {"z_img": z_, "dense": de, "tokens": to})

        a, b = one(), three()
        diff = float(max(np.abs(p - q).max() for p, q in zip(a, b)))
        times = {"one": [], "three": []}
        for _ in range(rounds):
            for name, fn in (("one", one), ("three", three)):
                t = time.perf_counter()
                fn()
                times[name].append((time.perf_counter() - t) * 1000)
    med = {k: float(np.median(v)) for k, v in times.items()}
    return {"oneGraphMs": med["one"], "threeGraphsMs": med["three"], "ratio": med["three"] / med["one"], "maxAbsDiff": diff}
