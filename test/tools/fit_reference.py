"""The Python evaluation's preprocessing and postprocessing of one image, for the TypeScript parity test
(test/integration/fit-parity.test.ts): the stored values, the model input `to_input` makes from them
(the manifest's intensity policy, bilinear into the input as `fit` says), smooth synthetic logits, and
the native-size logits `to_native` makes of them and the mask (threshold 0). Raw float32 / uint8 files + meta.json in --out."""
import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "models"))
from ldfsam_models.data import apply_intensity, read_raw  # noqa: E402
from ldfsam_models.evaluate import to_input, to_native  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--image", required=True)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--fit", default="longest-side-pad")
    ap.add_argument("--intensity", default='{"default": {"kind": "minmax"}}')
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    raw = read_raw(Path(args.image))
    grey = bool(np.array_equal(raw[..., 0], raw[..., 1]) and np.array_equal(raw[..., 0], raw[..., 2]))
    stored = raw[..., :1] if grey else raw
    x = to_input(apply_intensity(stored if grey else raw, json.loads(args.intensity)), args.size, args.fit)
    if grey:
        x = np.repeat(x[:1], 3, 0)
    # Smooth logits with a sign change inside the fitted area and large values in the padding (a
    # mark there must never reach the mask).
    yy, xx = np.mgrid[0 : args.size, 0 : args.size].astype(np.float32)
    logits = (np.sin(xx / 9.0) * np.cos(yy / 7.0) * 4.0 + (xx - args.size / 3) / 40.0).astype(np.float32)[None]
    native = to_native(logits, raw.shape[:2], args.fit)
    mask = native > 0
    stored.astype(np.float32).tofile(out / "raw.f32")
    x.astype(np.float32).tofile(out / "input.f32")
    logits.tofile(out / "logits.f32")
    mask.astype(np.uint8).tofile(out / "mask.u8")
    native.astype(np.float32).tofile(out / "native.f32")
    (out / "meta.json").write_text(json.dumps({"rows": raw.shape[0], "columns": raw.shape[1], "channels": stored.shape[2], "size": args.size}))


if __name__ == "__main__":
    main()
