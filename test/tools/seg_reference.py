"""pydicom's view of DICOM SEG files, for the TypeScript SEG reader tests: per frame its mask
(FRACTIONAL: > half of the maximum) as rows x columns bits packed LSB first in base64, the number
of set pixels, the segment number and the referenced source.

usage: python seg_reference.py FILE... (prints JSON to stdout)
"""
import base64
import json
import sys

import numpy as np
import pydicom


def pixels(ds):
    """pixel_array, except for 1-bit RLE, which pydicom refuses: each frame is then RLE-decoded as
    a byte stream by pydicom's RLE decoder and unpacked LSB first."""
    if not (ds.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.5" and ds.BitsAllocated == 1):
        return ds.pixel_array
    from pydicom.encaps import generate_frames
    from pydicom.pixels.decoders.rle import _rle_decode_frame

    n = int(ds.NumberOfFrames)
    count = ds.Rows * ds.Columns
    out = []
    for fragment in generate_frames(ds.PixelData, number_of_frames=n):
        packed = np.frombuffer(_rle_decode_frame(fragment, 1, (count + 7) // 8, 1, 8), dtype=np.uint8)
        out.append(np.unpackbits(packed, bitorder="little")[:count].reshape(ds.Rows, ds.Columns))
    return np.stack(out)


def main() -> None:
    out = {}
    for path in sys.argv[1:]:
        ds = pydicom.dcmread(path)
        arr = pixels(ds)
        if int(ds.NumberOfFrames) == 1:
            arr = arr[np.newaxis]
        if ds.SegmentationType == "FRACTIONAL":
            arr = arr > int(ds.MaximumFractionalValue) / 2
        frames = []
        for i, groups in enumerate(ds.PerFrameFunctionalGroupsSequence):
            source = groups.DerivationImageSequence[0].SourceImageSequence[0]
            mask = np.asarray(arr[i]).astype(bool)
            frames.append(
                {
                    "mask": base64.b64encode(np.packbits(mask.reshape(-1), bitorder="little").tobytes()).decode(),
                    "sum": int(np.count_nonzero(mask)),
                    "segment": int(groups.SegmentIdentificationSequence[0].ReferencedSegmentNumber),
                    "source": str(source.ReferencedSOPInstanceUID),
                }
            )
        out[path] = frames
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
