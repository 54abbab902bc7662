"""Training data from a PACS: DICOM images and the DICOM SEG objects that annotate them, in any
folder layout (a DICOMweb or C-MOVE export, `ldfsam pacs` downloads, a copy of Orthanc's storage).

Every SEG under the folder is paired frame by frame with its source slices (`load_seg_pairs`:
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
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
import pydicom
from PIL import Image
from pydicom.dataset import Dataset as DicomDataset
from pydicom.errors import InvalidDicomError
from pydicom.multival import MultiValue

from .data import PathLike, Record

# --------------------------------------------------------------------------------------------------
# DICOM SEG frames and their source images
# --------------------------------------------------------------------------------------------------

SEG_STORAGE = "1.2.840.10008.5.1.4.1.1.66.4"
_NATIVE_SYNTAXES = {"1.2.840.10008.1.2", "1.2.840.10008.1.2.1"}  # implicit and explicit VR little endian


@dataclass
class SegSlice:
    """One SEG frame of the chosen segment and the source slice it segments."""

    image: np.ndarray  # source slice after the modality LUT (rescale), float32 (or RGB as stored)
    mask: np.ndarray  # bool, rows x columns
    sop_instance_uid: str  # the source instance
    frame_number: Optional[int]  # 1-based frame of a multi-frame source, None for single-frame
    seg_frame: int  # 1-based frame of the SEG
    matched_by: str  # 'derivation' or 'position'


@dataclass
class _Source:
    path: Path
    sop_instance_uid: str
    series_instance_uid: str
    frames: int  # 1 for single-frame
    positions: List[Optional[np.ndarray]]  # ImagePositionPatient per frame (index 0 = frame 1)
    rows: int
    columns: int


def _frame_group(ds: DicomDataset, index: int, keyword: str):
    """Item of a functional group for frame `index` (0-based): per-frame first, then shared."""
    for seq_name in ("PerFrameFunctionalGroupsSequence", "SharedFunctionalGroupsSequence"):
        seq = ds.get(seq_name)
        if not seq:
            continue
        item = seq[index] if seq_name.startswith("PerFrame") else seq[0]
        group = item.get(keyword)
        if group:
            return group[0]
    return None


def _position(ds: DicomDataset, index: int) -> Optional[np.ndarray]:
    plane = _frame_group(ds, index, "PlanePositionSequence")
    value = plane.get("ImagePositionPatient") if plane is not None else ds.get("ImagePositionPatient")
    return np.asarray([float(v) for v in value]) if value is not None else None


def decode_seg_frames(ds: DicomDataset) -> np.ndarray:
    """All SEG frames as (frames, rows, columns) uint8: 0/1 for BINARY, stored values for FRACTIONAL.

    Native (uncompressed) 1-bit data is unpacked here: frames are packed back to back, least
    significant bit first, and a frame need not start on a byte boundary (rows x columns not a
    multiple of 8), so the whole bit stream is unpacked before it is cut into frames. Anything else
    is left to pydicom's decoders."""
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    rows, cols = int(ds.Rows), int(ds.Columns)
    if int(ds.BitsAllocated) == 1 and ds.file_meta.TransferSyntaxUID in _NATIVE_SYNTAXES:
        bits = np.unpackbits(np.frombuffer(ds.PixelData, dtype=np.uint8), bitorder="little")
        need = frames * rows * cols
        if bits.size < need:
            raise ValueError(f"PixelData holds {bits.size} bits, {need} needed")
        return bits[:need].reshape(frames, rows, cols)
    try:
        arr = ds.pixel_array
    except Exception as e:  # pydicom names every plugin that failed
        raise ValueError(f"cannot decode the SEG pixel data ({ds.file_meta.TransferSyntaxUID.name}): {e}") from e
    return np.asarray(arr).reshape(frames, rows, cols)


def seg_frame_masks(ds: DicomDataset, segment_number: int = 1) -> List[Tuple[int, np.ndarray]]:
    """(0-based frame index, bool mask) of every SEG frame of `segment_number`.

    BINARY frames are their bits. FRACTIONAL frames are thresholded at half the maximum:
    value >= 0.5 * MaximumFractionalValue (so a 0-255 probability of 128 is in, 127 out)."""
    numbers = [int(s.SegmentNumber) for s in ds.get("SegmentSequence", [])]
    if segment_number not in numbers:
        raise ValueError(f"segment {segment_number} not in this SEG (segments: {numbers})")
    kind = str(ds.SegmentationType).upper()
    if kind not in ("BINARY", "FRACTIONAL"):
        raise ValueError(f"unsupported SegmentationType {kind!r}")
    frames = decode_seg_frames(ds)
    out = []
    for i in range(frames.shape[0]):
        ident = _frame_group(ds, i, "SegmentIdentificationSequence")
        if ident is None or int(ident.ReferencedSegmentNumber) != segment_number:
            continue
        if kind == "BINARY":
            mask = frames[i] != 0
        else:
            mask = frames[i].astype(np.float64) >= 0.5 * float(ds.MaximumFractionalValue)
        out.append((i, mask))
    return out


def _source_files(sources: Union[PathLike, Sequence[PathLike]]) -> List[Path]:
    if isinstance(sources, (str, os.PathLike)):
        p = Path(sources)
        return sorted(q for q in p.rglob("*") if q.is_file()) if p.is_dir() else [p]
    return [Path(s) for s in sources]


def _index_sources(sources: Union[PathLike, Sequence[PathLike]], segs: Optional[List[Path]] = None) -> Dict[str, _Source]:
    """Headers of every DICOM image under `sources` by SOP Instance UID. Non-DICOM files (a
    screenshot, an NRRD) and SEG objects next to the images are skipped; the SEGs' paths are appended
    to `segs` when given (one pass over a folder finds both)."""
    index: Dict[str, _Source] = {}
    for path in _source_files(sources):
        try:
            ds = pydicom.dcmread(path, stop_before_pixels=True)
        except (InvalidDicomError, OSError):
            continue
        if ds.get("SOPClassUID") == SEG_STORAGE and segs is not None:
            segs.append(path)
        if "SOPInstanceUID" not in ds or ds.get("SOPClassUID") == SEG_STORAGE or "Rows" not in ds:
            continue
        frames = int(ds.get("NumberOfFrames", 1) or 1)
        index[str(ds.SOPInstanceUID)] = _Source(
            path=path,
            sop_instance_uid=str(ds.SOPInstanceUID),
            series_instance_uid=str(ds.get("SeriesInstanceUID", "")),
            frames=frames,
            positions=[_position(ds, i) for i in range(frames)],
            rows=int(ds.Rows),
            columns=int(ds.Columns),
        )
    return index


def _first_frame_number(src: DicomDataset) -> Optional[int]:
    """Referenced Frame Number of a source item (the first, when several are listed), or None."""
    value = src.get("ReferencedFrameNumber")
    if value is None or value == "":
        return None
    if isinstance(value, (list, tuple, MultiValue)):
        return int(value[0]) if len(value) else None
    return int(value)


def _by_derivation(ds: DicomDataset, i: int, index: Mapping[str, _Source]) -> Optional[Tuple[str, Optional[int]]]:
    """(SOP Instance UID, 1-based frame or None) from the frame's Derivation Image Sequence."""
    per_frame = ds.get("PerFrameFunctionalGroupsSequence")
    if not per_frame:
        return None
    for deriv in per_frame[i].get("DerivationImageSequence", []):
        for src in deriv.get("SourceImageSequence", []):
            uid = str(src.get("ReferencedSOPInstanceUID", ""))
            if uid not in index:
                continue
            frame = _first_frame_number(src)
            if index[uid].frames == 1:
                return uid, None
            if frame is not None:
                return uid, frame
            # a multi-frame source without a frame number: leave it to position matching
    return None


def _referenced_instances(ds: DicomDataset) -> Tuple[set, set]:
    series, instances = set(), set()
    for s in ds.get("ReferencedSeriesSequence", []):
        series.add(str(s.get("SeriesInstanceUID", "")))
        for inst in s.get("ReferencedInstanceSequence", []):
            instances.add(str(inst.ReferencedSOPInstanceUID))
    return series, instances


def _by_position(
    ds: DicomDataset, i: int, index: Mapping[str, _Source], tolerance_mm: float
) -> Optional[Tuple[str, Optional[int]]]:
    """The referenced source frame whose ImagePositionPatient is nearest the SEG frame's (within
    `tolerance_mm`), among the instances or series of the SEG's Referenced Series Sequence (among
    all given sources if a SEG lacks that sequence, which the standard requires)."""
    pos = _position(ds, i)
    if pos is None:
        return None
    series, instances = _referenced_instances(ds)
    restrict = bool(series or instances)
    best, best_d = None, tolerance_mm
    for src in index.values():
        if restrict and src.sop_instance_uid not in instances and src.series_instance_uid not in series:
            continue
        for f, p in enumerate(src.positions):
            if p is None:
                continue
            d = float(np.linalg.norm(p - pos))
            if d <= best_d:
                best, best_d = (src.sop_instance_uid, f + 1 if src.frames > 1 else None), d
    return best


def _modality(ds: DicomDataset, frame: Optional[int]) -> Tuple[float, float]:
    """Rescale slope and intercept: the frame's Pixel Value Transformation (enhanced objects, even
    single-frame ones), else the top-level attributes."""
    item = _frame_group(ds, (frame or 1) - 1, "PixelValueTransformationSequence")
    src = item if item is not None else ds
    return float(src.get("RescaleSlope", 1.0) or 1.0), float(src.get("RescaleIntercept", 0.0) or 0.0)


def load_seg_pairs(
    seg: Union[PathLike, DicomDataset],
    sources: Union[PathLike, Sequence[PathLike]],
    segment_number: int = 1,
    position_tolerance_mm: float = 0.01,
    index: Optional[Mapping[str, "_Source"]] = None,
) -> List[SegSlice]:
    """(source slice, mask) pairs of one segment of a DICOM SEG, in SEG frame order.

    Each SEG frame is matched to its source through the per-frame Derivation Image Sequence ->
    Source Image Sequence -> Referenced SOP Instance UID (+ Referenced Frame Number for multi-frame
    sources). Frames without such a reference fall back to geometry: the source frame, among the
    instances (or series) of the Referenced Series Sequence, whose Image Position (Patient) lies
    within `position_tolerance_mm` of the SEG frame's Plane Position. A frame that matches nothing,
    or a source of another size than the SEG, is an error, never a silent skip."""
    ds = seg if isinstance(seg, DicomDataset) else pydicom.dcmread(seg)
    if ds.get("SOPClassUID") != SEG_STORAGE:
        raise ValueError("not a DICOM SEG (Segmentation Storage) object")
    index = _index_sources(sources) if index is None else index  # a caller pairing many SEGs indexes once
    cache: Dict[str, np.ndarray] = {}
    out = []
    for i, mask in seg_frame_masks(ds, segment_number):
        match, how = _by_derivation(ds, i, index), "derivation"
        if match is None:
            match, how = _by_position(ds, i, index, position_tolerance_mm), "position"
        if match is None:
            raise ValueError(f"SEG frame {i + 1}: no source image found by derivation or position")
        uid, frame = match
        src = index[uid]
        if (src.rows, src.columns) != mask.shape:
            raise ValueError(f"SEG frame {i + 1}: mask {mask.shape} but source {uid} is {src.rows}x{src.columns}")
        if uid not in cache:
            cache[uid] = _source_pixels(src)
        pixels = cache[uid][frame - 1] if frame else cache[uid]
        out.append(SegSlice(pixels, mask, uid, frame, i + 1, how))
    return out


def _source_pixels(src: _Source) -> np.ndarray:
    """Pixels of a source (frames first for multi-frame) with the modality rescale applied, float32
    for grey images; colour images are returned as stored."""
    ds = pydicom.dcmread(src.path)
    arr = np.asarray(ds.pixel_array)
    if int(ds.get("SamplesPerPixel", 1)) != 1:
        return arr
    if src.frames > 1:
        out = np.empty(arr.shape, dtype=np.float32)
        for f in range(src.frames):
            slope, intercept = _modality(ds, f + 1)
            out[f] = arr[f].astype(np.float32) * slope + intercept
        return out
    slope, intercept = _modality(ds, None)
    return arr.astype(np.float32) * slope + intercept


# --------------------------------------------------------------------------------------------------
# Records for training
# --------------------------------------------------------------------------------------------------

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
