"""model.json: writing, hashing and validating the manifest beside the ONNX files."""
import hashlib
import json
import pathlib
import subprocess
from typing import Dict, List

import jsonschema

SCHEMA_PATH = pathlib.Path(__file__).resolve().parents[1] / "model.schema.json"

# Segment descriptions for the data sets this project trains on (SNOMED CT), and a generic one.
SEGMENT_PRESETS: Dict[str, dict] = {
    # A structure the user names when accepting an interactive mask (promptable-only models).
    "structure": {
        "label": "Structure",
        "category": {"scheme": "SCT", "code": "91723000", "meaning": "Anatomical Structure"},
        "type": {"scheme": "SCT", "code": "91723000", "meaning": "Anatomical Structure"},
        "color": {"rgb": [0, 158, 115]},
    },
    "tissue": {
        "label": "Tissue",
        "category": {"scheme": "SCT", "code": "85756007", "meaning": "Tissue"},
        "type": {"scheme": "SCT", "code": "85756007", "meaning": "Tissue"},
        "color": {"rgb": [230, 159, 0]},
    },
    # HC18: the fetal head (SCT 69536005 Head, an anatomical structure).
    "fetal-head": {
        "label": "Fetal head",
        "category": {"scheme": "SCT", "code": "91723000", "meaning": "Anatomical Structure"},
        "type": {"scheme": "SCT", "code": "69536005", "meaning": "Head"},
        "color": {"rgb": [230, 159, 0]},
    },
    # PH2: the pigmented skin lesion (SCT 95324001 Skin lesion, a morphologically abnormal structure).
    "skin-lesion": {
        "label": "Skin lesion",
        "category": {"scheme": "SCT", "code": "49755003", "meaning": "Morphologically Abnormal Structure"},
        "type": {"scheme": "SCT", "code": "95324001", "meaning": "Skin lesion"},
        "color": {"rgb": [86, 180, 233]},
    },
}


class ManifestError(ValueError):
    pass


def sha256_of(path: pathlib.Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def rgb_to_dicom_lab(rgb: List[int]) -> List[int]:
    """sRGB (0-255) to DICOM's Recommended Display CIELab Value (PS3.3 C.10.7.1.1: L* 0..100 ->
    0..65535, a*/b* -128..127 -> 0..65535), D65 white point."""

    def lin(c: float) -> float:
        c /= 255.0
        return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4

    r, g, b = (lin(c) for c in rgb)
    x = (0.4124564 * r + 0.3575761 * g + 0.1804375 * b) / 0.95047
    y = 0.2126729 * r + 0.7151522 * g + 0.0721750 * b
    z = (0.0193339 * r + 0.1191920 * g + 0.9503041 * b) / 1.08883

    def f(t: float) -> float:
        return t ** (1 / 3) if t > (6 / 29) ** 3 else t / (3 * (6 / 29) ** 2) + 4 / 29

    L = 116 * f(y) - 16
    a = 500 * (f(x) - f(y))
    bb = 200 * (f(y) - f(z))
    return [round(L * 65535 / 100), round((a + 128) * 65535 / 255), round((bb + 128) * 65535 / 255)]


def segments_from(presets: List[str]) -> List[dict]:
    out = []
    for i, name in enumerate(presets, start=1):
        if name not in SEGMENT_PRESETS:
            raise ManifestError(f"unknown segment preset {name!r}; known: {', '.join(SEGMENT_PRESETS)}")
        seg = json.loads(json.dumps(SEGMENT_PRESETS[name]))
        seg["number"] = i
        seg["color"]["cielab"] = rgb_to_dicom_lab(seg["color"]["rgb"])
        out.append(seg)
    return out


def git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=SCHEMA_PATH.parent, check=True)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True, cwd=SCHEMA_PATH.parent).stdout
        return out.stdout.strip() + ("-dirty" if dirty.strip() else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def validate_manifest(manifest: dict) -> None:
    schema = json.loads(SCHEMA_PATH.read_text())
    try:
        jsonschema.validate(manifest, schema)
    except jsonschema.ValidationError as err:
        where = "/".join(str(p) for p in err.absolute_path) or "(top level)"
        raise ManifestError(f"model.json is invalid at {where}: {err.message}") from None
    numbers = [s["number"] for s in manifest["segments"]]
    if numbers != list(range(1, len(numbers) + 1)):
        raise ManifestError(f"segment numbers must be 1..N in order, got {numbers}")
    if "promptable" in manifest:
        check_promptable_pair(manifest["promptable"])
    listed = {f["path"] for f in manifest["files"]}
    for graph in graph_files(manifest).values():
        if graph not in listed:
            raise ManifestError(f"{graph} is described in model.json but not listed (with its SHA-256) in files")


def modes(manifest: dict) -> List[str]:
    return manifest.get("modes", ["auto"])


def graph_files(manifest: dict) -> Dict[str, str]:
    """role -> file of every graph the manifest describes."""
    out = {}
    if "auto" in modes(manifest):
        out["segmentation"] = next((f["path"] for f in manifest["files"] if f["role"] == "segmentation"), manifest["files"][0]["path"])
    if "promptable" in manifest:
        out["image-encoder"] = manifest["promptable"]["encoder"]["file"]
        out["mask-decoder"] = manifest["promptable"]["decoder"]["file"]
    return out


def check_promptable_pair(section: dict) -> None:
    """Every encoder output must be a decoder input of the same name, dtype and shape (the decoder
    takes one slice: batch 1 where the encoder's batch is dynamic)."""
    decoder_inputs = {t["name"]: t for t in section["decoder"]["inputs"]}
    for out in section["encoder"]["outputs"]:
        dec = decoder_inputs.get(out["name"])
        if dec is None:
            raise ManifestError(f"promptable: the encoder's output {out['name']} is not a decoder input")
        if dec["dtype"] != out["dtype"] or dec["shape"][1:] != out["shape"][1:] or dec["shape"][0] != 1:
            raise ManifestError(
                f"promptable: encoder output {out['name']} {out['dtype']} {out['shape']} does not fit decoder input {dec['dtype']} {dec['shape']}"
            )


def verify_folder(folder: pathlib.Path) -> dict:
    """Validates model.json and every file's size and SHA-256; returns the manifest."""
    path = folder / "model.json"
    try:
        manifest = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise ManifestError(f"cannot read {path}: {err}") from None
    validate_manifest(manifest)
    for f in manifest["files"]:
        file = folder / f["path"]
        if not file.is_file():
            raise ManifestError(f"{file} is listed in model.json but missing")
        if file.stat().st_size != f["bytes"] or sha256_of(file) != f["sha256"]:
            raise ManifestError(f"{file} does not match model.json (size or SHA-256 differs): corrupted or replaced")
    graphs = graph_files(manifest)
    if "segmentation" in graphs:
        check_onnx_io(folder / graphs["segmentation"], manifest)
    if "promptable" in manifest:
        for part in ("encoder", "decoder"):
            check_onnx_io(folder / manifest["promptable"][part]["file"], manifest["promptable"][part])
    return manifest


ONNX_DTYPES = {1: "float32", 10: "float16", 2: "uint8", 7: "int64"}


def check_onnx_io(path: pathlib.Path, manifest: dict) -> None:
    """The graph's input and output names, element types and shapes must be the manifest's (`manifest`:
    the manifest itself for the automatic graph, or a promptable graph's section)."""
    import onnx

    try:
        graph = onnx.load(str(path), load_external_data=False).graph
    except Exception as err:  # onnx raises DecodeError and others on damaged files
        raise ManifestError(f"{path} is not a readable ONNX model: {err}") from None

    def described(values):
        out = []
        for v in values:
            t = v.type.tensor_type
            dims = [d.dim_param if d.dim_param else d.dim_value for d in t.shape.dim]
            out.append({"name": v.name, "dtype": ONNX_DTYPES.get(t.elem_type, str(t.elem_type)), "shape": dims})
        return out

    for kind, actual in (("inputs", described(graph.input)), ("outputs", described(graph.output))):
        expected = manifest[kind]
        norm = lambda ts: [(t["name"], t["dtype"], [d if isinstance(d, int) else "dynamic" for d in t["shape"]]) for t in ts]  # noqa: E731
        if norm(actual) != norm(expected):
            raise ManifestError(f"{path}: ONNX {kind} {norm(actual)} differ from model.json {norm(expected)}")
