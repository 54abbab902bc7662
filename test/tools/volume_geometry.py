"""Volume files in many orientations and how ITK (SimpleITK 2.5, the reader of 3D Slicer) places them:
NIfTI with the transform in qform and sform, in one of them, in both but different, with a sheared
sform, and NRRD in LPS and RAS spaces, for all 48 axis permutations and signs. Prints a JSON list of
{file, size, spacing, origin, direction, values (first 4 real values in ITK's index order)} or
{file, error}. usage: python volume_geometry.py OUT_DIR"""
import itertools
import json
import os
import sys

import nibabel as nib
import numpy as np
import SimpleITK as sitk

sitk.ProcessObject_SetGlobalWarningDisplay(False)

out = sys.argv[1]
os.makedirs(out, exist_ok=True)
rng = np.random.default_rng(7)
data = (rng.random((5, 4, 3)) * 1000).astype(np.int16)
cases = []


def nifti(name, affine, qform=True, sform=True, sform_affine=None, slope=None, scode=2):
    img = nib.Nifti1Image(data, None)
    img.header.set_qform(affine if qform else None, code=1 if qform else 0)
    s = sform_affine if sform_affine is not None else affine
    img.header.set_sform(s if sform else None, code=scode if sform else 0)
    if slope:
        img.header.set_slope_inter(*slope)
    path = os.path.join(out, f"{name}.nii.gz")
    nib.save(img, path)
    cases.append(path)


for n, (perm, signs) in enumerate(itertools.product(itertools.permutations(range(3)), itertools.product((1, -1), repeat=3))):
    rot = np.zeros((3, 3))
    for col, (row, sign) in enumerate(zip(perm, signs)):
        rot[row, col] = sign
    spacing = rng.uniform(0.3, 3.0, 3)
    affine = np.eye(4)
    affine[:3, :3] = rot * spacing
    affine[:3, 3] = rng.uniform(-200, 200, 3)
    kind = ("both", "qform", "sform")[n % 3]
    nifti(f"orient{n:02d}-{kind}", affine, qform=kind != "sform", sform=kind != "qform", scode=1 + n % 2)

oblique = np.eye(4)
c, s = np.cos(0.3), np.sin(0.3)
oblique[:3, :3] = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]]) @ np.diag([0.8, 0.9, 2.5])
oblique[:3, 3] = [10, -20, 30]
nifti("oblique-both", oblique)
other = oblique.copy()
other[:3, 3] = [50, 60, 70]
nifti("disagree", oblique, sform_affine=other)  # qform and sform both valid, different origins: ITK takes the qform
nifti("disagree-scanner", oblique, sform_affine=other, scode=1)  # ... unless the sform is a scanner transform
sheared = oblique.copy()
sheared[0, 1] += 0.4
nifti("sheared-sform", oblique, sform_affine=sheared, scode=1)
nifti("scaled", oblique, slope=(0.5, -100))

# NRRD: ITK's own writer (LPS), and the same file with its header rewritten in RAS.
img = sitk.GetImageFromArray(np.transpose(data, (2, 1, 0)).copy())
img.SetSpacing((0.7, 1.1, 2.0))
img.SetOrigin((-12.5, 40.0, 7.25))
img.SetDirection((0, 1, 0, -1, 0, 0, 0, 0, 1))
lps = os.path.join(out, "itk-lps.nrrd")
sitk.WriteImage(img, lps, True)
cases.append(lps)
raw = open(lps, "rb").read()
head, body = raw.split(b"\n\n", 1)
lines = head.decode().split("\n")
def ras_line(line):
    if line.startswith("space:"):
        return "space: right-anterior-superior"
    if line.startswith("space directions:") or line.startswith("space origin:"):
        key, vectors = line.split(":", 1)
        def flip(v):
            x, y, z = (float(t) for t in v.strip("() ").split(","))
            return f"({-x},{-y},{z})"
        return key + ": " + " ".join(flip(v) for v in vectors.split())
    return line
ras = os.path.join(out, "itk-ras.nrrd")
open(ras, "wb").write("\n".join(ras_line(line) for line in lines).encode() + b"\n\n" + body)
cases.append(ras)

report = []
for path in cases:
    try:
        im = sitk.ReadImage(path)
        arr = sitk.GetArrayFromImage(im)  # [k, j, i]
        flat = np.transpose(arr, (2, 1, 0)).flatten(order="F")  # i fastest
        report.append({"file": path, "size": list(im.GetSize()), "spacing": list(im.GetSpacing()), "origin": list(im.GetOrigin()),
                       "direction": list(im.GetDirection()), "values": [float(v) for v in flat[:4]] + [float(flat[-1])]})
    except Exception as err:
        report.append({"file": path, "error": str(err)})
print(json.dumps(report))
