"""Training data from a PACS: DICOM images and the DICOM SEG objects that annotate them, in any
folder layout (a DICOMweb or C-MOVE export, `ldfsam pacs` downloads, a copy of Orthanc's storage).

Every SEG under the folder is paired frame by frame with its source slices (`data.load_seg_pairs`:
Derivation Image references first, Plane Position otherwise). Each pair becomes a `Record` whose
image is the source slice after its modality rescale, saved once as `.npy` float32 in a cache folder
(the values the server sees, so the manifest's intensity policy applies at training and evaluation
alike; rewritten on every load, so it follows the folder), and whose mask is a 0/255 PNG. The subject is the Patient ID, so the project's split keeps a
patient's slices together. Slices are those the SEG has a frame for (SEGs normally omit empty frames),
so the model learns from annotated slices only.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

import numpy as np
import pydicom
from PIL import Image

from .data import Record, _index_sources, load_seg_pairs


def _pixel_spacing(ds) -> Optional[Tuple[float, float]]:
    """(row, column) spacing in mm: Pixel Spacing, else Imager Pixel Spacing, else the first
    ultrasound region's physical delta (cm -> mm); None when the image has none."""
    for keyword in ("PixelSpacing", "ImagerPixelSpacing"):
        value = ds.get(keyword)
        if value is not None and len(value) == 2:
            return float(value[0]), float(value[1])
    regions = ds.get("SequenceOfUltrasoundRegions")
    if regions:
        r = regions[0]
        if r.get("PhysicalUnitsXDirection") == 3 and r.get("PhysicalUnitsYDirection") == 3:  # cm
            return abs(float(r.PhysicalDeltaY)) * 10, abs(float(r.PhysicalDeltaX)) * 10
    return None


def load_dicom_seg(root: Path, cache_dir: Path, segment_number: int = 1, log: Callable[[str], None] = print) -> List[Record]:
    """Records of every (source slice, segment `segment_number` mask) pair of the SEGs under `root`.

    A SEG without that segment is skipped with a message; none at all is an error, as is a SEG frame
    whose source is missing or of another size (`load_seg_pairs`). A slice annotated by two SEGs is
    taken once, from the first SEG in path order, and reported."""
    root = Path(root)
    segs: List[Path] = []
    index = _index_sources(root, segs)
    if not segs:
        raise FileNotFoundError(f"no DICOM SEG (Segmentation Storage) files under {root}")
    key = hashlib.sha256(f"{root.resolve()}|{segment_number}|v1".encode()).hexdigest()[:12]
    out_dir = Path(cache_dir) / f"dicom-seg-{key}"
    (out_dir / "images").mkdir(parents=True, exist_ok=True)
    (out_dir / "masks").mkdir(parents=True, exist_ok=True)
    headers: Dict[str, pydicom.Dataset] = {}
    records: List[Record] = []
    seen: Dict[str, Path] = {}
    skipped, duplicates = [], 0
    for seg_path in segs:
        seg = pydicom.dcmread(seg_path)
        numbers = {int(s.SegmentNumber) for s in seg.get("SegmentSequence", [])}
        if segment_number not in numbers:
            skipped.append(seg_path)
            continue
        subject = str(seg.get("PatientID") or seg.get("StudyInstanceUID"))
        for pair in load_seg_pairs(seg, root, segment_number, index=index):
            source_id = pair.sop_instance_uid + (f"#{pair.frame_number}" if pair.frame_number else "")
            if source_id in seen:
                duplicates += 1
                continue
            seen[source_id] = seg_path
            rid = hashlib.sha256(source_id.encode()).hexdigest()[:16]
            image, mask = out_dir / "images" / f"{rid}.npy", out_dir / "masks" / f"{rid}.png"
            np.save(image, np.asarray(pair.image, dtype=np.float32))  # rewritten: the folder may have changed
            Image.fromarray(pair.mask.astype(np.uint8) * 255).save(mask)
            src = index[pair.sop_instance_uid]
            if pair.sop_instance_uid not in headers:
                headers[pair.sop_instance_uid] = pydicom.dcmread(src.path, stop_before_pixels=True)
            ds = headers[pair.sop_instance_uid]
            meta = {
                "modality": str(ds.get("Modality", "default")),
                "photometric": str(ds.get("PhotometricInterpretation", "")),
                "source": source_id,
                "seg": str(seg_path),
            }
            records.append(Record(rid, subject, image, mask, _pixel_spacing(ds), "dicom-seg", meta))
    if skipped:
        log(f"dicom-seg: {len(skipped)} SEG file(s) have no segment {segment_number} and were skipped, e.g. {skipped[0]}")
    if duplicates:
        log(f"dicom-seg: {duplicates} slice(s) annotated by more than one SEG: the first SEG's mask was used")
    if not records:
        raise ValueError(f"no SEG under {root} has segment {segment_number}")
    (out_dir / "index.json").write_text(json.dumps([{"id": r.id, "subject": r.subject, **r.meta} for r in records], indent=1))
    return sorted(records, key=lambda r: (r.subject, r.meta["source"]))
