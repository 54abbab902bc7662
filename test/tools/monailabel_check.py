"""Drives the LDFSAM server's MONAI Label API with MONAI Label's own Python client (PyPI monailabel
0.8.5, or with --client-module the Slicer module's copy of it, MONAILabelLib/client.py) and checks
every answer independently: volumes are built from the shared CT with nibabel, and labels are read
back with SimpleITK, the reader 3D Slicer loads them with. Prints one JSON report.

Expected labels are the fixtures' known answers: the threshold fixture marks voxels whose value,
scaled min-max per slice along the acquisition axis, is > 0.5; the promptable fixture does the same
inside the prompt's box (and within discs around clicks). Each label is compared with its expectation and with the expectation
flipped, transposed and shifted by two voxels, which must agree far less.

usage: python monailabel_check.py --server URL --ct DIR --work DIR [--series UID] [--client-module FILE]
"""
import argparse
import importlib.util
import json
import os
import sys
import traceback
import urllib.request

import nibabel as nib
import numpy as np
import pydicom
import SimpleITK as sitk

PARAMS = {"result_extension": ".nrrd", "result_dtype": "uint8"}


def load_client(module_path):
    if not module_path:
        from monailabel.client import MONAILabelClient
        from monailabel.client import client as mod

        return MONAILabelClient, mod.MONAILabelUtils, mod.__file__
    spec = importlib.util.spec_from_file_location("slicer_client", module_path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.MONAILabelClient, mod.MONAILabelUtils, module_path


def ct_volume(folder):
    """The shared CT as (voxels [i, j, k] in HU, LPS affine): i = column, j = row, k ascending along the normal."""
    slices = []
    for name in sorted(os.listdir(folder)):
        try:
            ds = pydicom.dcmread(os.path.join(folder, name))
        except Exception:
            continue
        if "PixelData" in ds:
            slices.append(ds)
    row, col = np.array(slices[0].ImageOrientationPatient[:3], float), np.array(slices[0].ImageOrientationPatient[3:], float)
    normal = np.cross(row, col)
    slices.sort(key=lambda d: float(np.dot(normal, np.array(d.ImagePositionPatient, float))))
    hu = np.stack([d.pixel_array * float(d.get("RescaleSlope", 1)) + float(d.get("RescaleIntercept", 0)) for d in slices], axis=-1)
    hu = np.transpose(hu, (1, 0, 2)).astype(np.int16)  # [row, col, k] -> [i = col, j = row, k]
    sr, sc = (float(v) for v in slices[0].PixelSpacing)
    p0, p1 = (np.array(d.ImagePositionPatient, float) for d in (slices[0], slices[-1]))
    dk = np.dot(p1 - p0, normal) / (len(slices) - 1)
    lps = np.eye(4)
    lps[:3, 0], lps[:3, 1], lps[:3, 2], lps[:3, 3] = row * sc, col * sr, normal * dk, p0
    return hu, lps


def lps_to_ras(affine):
    return np.diag([-1, -1, 1, 1]) @ affine


def threshold_mask(values, axis):
    """The threshold fixture's answer: per slice along `axis`, min-max scaled > 0.5."""
    v = np.moveaxis(values.astype(np.float64), axis, 0)
    lo = v.reshape(v.shape[0], -1).min(1)[:, None, None]
    hi = v.reshape(v.shape[0], -1).max(1)[:, None, None]
    return np.moveaxis((v - lo) / np.where(hi > lo, hi - lo, 1) > 0.5, 0, axis)


def dice(a, b):
    s = a.sum() + b.sum()
    return 1.0 if s == 0 else float(2 * np.logical_and(a, b).sum() / s)


def wrong_versions(mask):
    """The expectation misplaced: flipped along each axis, transposed in plane, shifted by two voxels."""
    out = {f"flip{a}": np.flip(mask, a) for a in range(3)}
    out["transposeIJ"] = np.swapaxes(mask, 0, 1) if mask.shape[0] == mask.shape[1] else np.flip(mask, 0)
    for a in range(3):
        out[f"shift{a}"] = np.roll(mask, 2, axis=a)  # about 1 mm in plane for the CT
    return out


def read_label(path):
    """A label file as Slicer reads it (SimpleITK): voxels [i, j, k] and geometry."""
    img = sitk.ReadImage(path)
    arr = np.transpose(sitk.GetArrayFromImage(img), (2, 1, 0))
    return arr, geometry(img), img.GetPixelIDTypeAsString()


def geometry(img):
    return {"size": list(img.GetSize()), "spacing": list(img.GetSpacing()), "origin": list(img.GetOrigin()), "direction": list(img.GetDirection())}


def same_geometry(a, b, tol=1e-3):
    return a["size"] == b["size"] and all(
        np.allclose(a[k], b[k], atol=tol) for k in ("spacing", "origin", "direction")
    )


def compare(label, expected):
    got = label > 0
    return {
        "dice": dice(got, expected),
        "wrong": {k: dice(got, w) for k, w in wrong_versions(expected).items()},
        "voxels": int(got.sum()),
        "expectedVoxels": int(expected.sum()),
    }


def write_variants(hu, lps, work):
    """NIfTI files of the CT: the transform in both forms, in one only, the voxels stored flipped, and
    stored with the slices along i (dim_info says so). Each with the mask expected in its voxel order."""
    out = {}
    ras = lps_to_ras(lps)
    expected = threshold_mask(hu, 2)

    def save(name, data, affine, qform, sform, slice_dim=None):
        img = nib.Nifti1Image(data, None)
        img.header.set_qform(affine if qform else None, code=1 if qform else 0)
        img.header.set_sform(affine if sform else None, code=1 if sform else 0)
        if slice_dim is not None:
            img.header.set_dim_info(slice=slice_dim)
        path = os.path.join(work, f"{name}.nii.gz")
        nib.save(img, path)
        return path

    out["both"] = (save("both", hu, ras, True, True), expected)
    out["qform"] = (save("qform", hu, ras, True, False), expected)
    out["sform"] = (save("sform", hu, ras, False, True), expected)
    flip = np.eye(4)
    flip[0, 0], flip[0, 3] = -1, hu.shape[0] - 1  # voxel i stored at n-1-i
    out["flipped"] = (save("flipped", np.flip(hu, 0).copy(), ras @ flip, True, True), np.flip(expected, 0))
    perm = np.zeros((4, 4))
    perm[0, 2] = perm[1, 1] = perm[2, 0] = perm[3, 3] = 1  # file axes (k, j, i)
    out["slices-along-i"] = (save("slices-along-i", np.transpose(hu, (2, 1, 0)).copy(), ras @ perm, True, True, slice_dim=0),
                             np.transpose(expected, (2, 1, 0)))
    return out


def bad_files(hu, work):
    """Uploads that must be refused, each with what the server must say."""
    files = {}
    junk = os.path.join(work, "junk.nii.gz")
    with open(junk, "wb") as f:
        f.write(b"this is not a volume\n" * 100)
    files["not-a-volume"] = junk
    small = hu[:64, :64, :4]
    good = os.path.join(work, "small.nii")
    nib.save(nib.Nifti1Image(small, np.eye(4)), good)
    raw = open(good, "rb").read()
    files["truncated"] = os.path.join(work, "truncated.nii")
    open(files["truncated"], "wb").write(raw[: len(raw) - 1000])
    files["4-d"] = os.path.join(work, "four-d.nii.gz")
    nib.save(nib.Nifti1Image(np.stack([small, small], axis=-1), np.eye(4)), files["4-d"])
    files["complex"] = os.path.join(work, "complex.nii.gz")
    nib.save(nib.Nifti1Image(small.astype(np.complex64), np.eye(4)), files["complex"])
    files["too-large"] = os.path.join(work, "zeros.nii.gz")
    nib.save(nib.Nifti1Image(np.zeros((512, 512, 160), np.int16), np.eye(4)), files["too-large"])  # 80 MB of voxels, ~80 kB gzipped
    files["too-large-upload"] = os.path.join(work, "noise.nii")  # 31 MB sent, over the test server's upload limit
    nib.save(nib.Nifti1Image(np.random.default_rng(0).integers(-1000, 1000, (512, 512, 60), dtype=np.int16), np.eye(4)), files["too-large-upload"])
    return files


def run(args):
    Client, Utils, client_file = load_client(args.client_module)
    report, errors = {"clientModule": client_file}, {}
    client = Client(args.server, tmpdir=args.work, client_id="ldfsam-test")
    report["authEnabled"] = client.auth_enabled()
    report["info"] = client.info()
    report["trainRunning"] = client.train_status(check_if_running=True)
    hu, lps = ct_volume(args.ct)
    expected = threshold_mask(hu, 2)
    both = os.path.join(args.work, "both.nii.gz")

    def variants():
        """Uploads and automatic inference, each variant read back with SimpleITK."""
        report["variants"] = {}
        for name, (path, want) in write_variants(hu, lps, args.work).items():
            entry = {"upload": client.upload_image(path, image_id=f"ct-{name}")}
            label_file, params = client.infer("threshold-fixture", f"ct-{name}", dict(PARAMS, modality="CT"))
            label, geo, dtype = read_label(label_file)
            source = geometry(sitk.ReadImage(path))
            entry.update(params=params, dtype=dtype, geometry=geo, sourceGeometry=source, sameGeometry=same_geometry(geo, source),
                         file=os.path.basename(label_file), **compare(label, want))
            report["variants"][name] = entry

    def prompts():
        """An ROI over 5 slices of the CT (also on the flipped file), and a click alone."""
        roi = [150, 360, 120, 400, 10, 14]
        label_file, params = client.infer("promptable-fixture", "ct-both", dict(PARAMS, roi=roi, foreground=[], background=[], label="bone"))
        label, geo, _ = read_label(label_file)
        inner = np.zeros_like(expected)
        inner[roi[0] + 3 : roi[1] - 2, roi[2] + 3 : roi[3] - 2, roi[4] : roi[5] + 1] = True
        outer = np.zeros_like(expected)
        outer[roi[0] - 2 : roi[1] + 3, roi[2] - 2 : roi[3] + 3, roi[4] : roi[5] + 1] = True
        report["roi"] = {
            "params": params,
            "sameGeometry": same_geometry(geo, geometry(sitk.ReadImage(both))),
            "insideDice": dice(label[inner] > 0, expected[inner]),
            "outsideVoxels": int((label[~outer] > 0).sum()),
            "slicesWithLabel": sorted(int(k) for k in np.nonzero((label > 0).any(axis=(0, 1)))[0]),
            "wrongInside": {k: dice(label[inner] > 0, w[inner]) for k, w in wrong_versions(expected).items()},
        }
        n = hu.shape[0]
        froi = [n - 1 - roi[1], n - 1 - roi[0]] + roi[2:]
        label_file, _ = client.infer("promptable-fixture", "ct-flipped", dict(PARAMS, roi=froi, label="bone"))
        flabel, _, _ = read_label(label_file)
        report["roiFlipped"] = {"sameAsUnflipped": dice(np.flip(flabel, 0) > 0, label > 0)}
        bone = np.argwhere(expected[:, :, 20])
        click = [int(v) for v in bone[len(bone) // 2]] + [20]
        label_file, params = client.infer("promptable-fixture", "ct-both", dict(PARAMS, foreground=[click], background=[], label="bone"))
        label, _, _ = read_label(label_file)
        report["click"] = {
            "click": click,
            "params": params,
            "slicesWithLabel": sorted(int(k) for k in np.nonzero((label > 0).any(axis=(0, 1)))[0]),
            "holdsClick": bool(label[click[0], click[1], click[2]] > 0),
            "voxels": int((label > 0).sum()),
            "outsideThreshold": int(((label > 0) & ~expected).sum()),
        }

    def pacs():
        """A PACS series: the volume the server returns and the label, against SimpleITK's reading of the DICOM files."""
        reader = sitk.ImageSeriesReader()
        reader.SetFileNames(reader.GetGDCMSeriesFileNames(args.ct, args.series))
        dicom = reader.Execute()
        dicom_geo = geometry(dicom)
        dicom_hu = np.transpose(sitk.GetArrayFromImage(dicom), (2, 1, 0))
        path = os.path.join(args.work, "pacs.nrrd")
        with urllib.request.urlopen(f"{args.server.rstrip('/')}/datastore/image?image={args.series}") as r, open(path, "wb") as f:
            disposition = r.headers.get("content-disposition")
            f.write(r.read())
        volume, vgeo, vtype = read_label(path)
        label_file, params = client.infer("threshold-fixture", args.series, dict(PARAMS))
        label, lgeo, _ = read_label(label_file)
        report["pacs"] = {
            "disposition": disposition,
            "volumeGeometry": vgeo,
            "dicomGeometry": dicom_geo,
            "volumeSameGeometry": same_geometry(vgeo, dicom_geo),
            "volumeType": vtype,
            "volumeEqual": bool(np.array_equal(volume.astype(np.int32), dicom_hu.astype(np.int32))),
            "labelSameGeometry": same_geometry(lgeo, dicom_geo),
            "params": params,
            **compare(label, threshold_mask(dicom_hu, 2)),
        }
        # output=dicom_seg: the client's own multipart call, with the output its infer() has no argument for.
        selector = f"/infer/threshold-fixture?image={args.series}&output=dicom_seg"
        status, form, files, _ = Utils.http_multipart("POST", args.server, selector, {"params": json.dumps(PARAMS)}, {})
        report["dicomSeg"] = {"status": status, "params": json.loads(form["params"]) if status == 200 else str(form)[:400],
                              "files": sorted(files or {})}

    def samples():
        """Active learning until nothing is left: each answer is segmented into the PACS before the next."""
        report["samples"] = []
        for _ in range(4):
            sample = client.next_sample("first", {})
            report["samples"].append(sample)
            if not sample.get("id"):
                break
            # What the Slicer module then does: download the series as `name` and load it (SimpleITK here).
            path = os.path.join(args.work, sample["name"])
            with urllib.request.urlopen(f"{args.server.rstrip('/')}/datastore/image?image={sample['id']}") as r, open(path, "wb") as f:
                f.write(r.read())
            img = sitk.ReadImage(path)
            sample = dict(sample, downloaded={"size": list(img.GetSize()), "components": img.GetNumberOfComponentsPerPixel()})
            status, form, _, _ = Utils.http_multipart(
                "POST", args.server, f"/infer/threshold-fixture?image={sample['id']}&output=dicom_seg", {"params": json.dumps(PARAMS)}, {}
            )
            report["samples"][-1] = dict(sample, segStatus=status,
                                         seg=json.loads(form["params"]).get("dicom_seg") if status == 200 else str(form)[:400])

    def session():
        """A volume uploaded as a session (what the Slicer module does with a volume it loaded itself)."""
        created = client.create_session(both)
        label_file, _ = client.infer("threshold-fixture", "", dict(PARAMS, modality="CT"), session_id=created["session_id"])
        label, _, _ = read_label(label_file)
        report["session"] = {"created": created, "get": client.get_session(created["session_id"]), "dice": dice(label > 0, expected)}

    def bad():
        """Bad uploads: refused, and nothing kept."""
        report["bad"] = {}
        for name, path in bad_files(hu, args.work).items():
            try:
                client.upload_image(path, image_id=f"bad-{name}")
                report["bad"][name] = {"refused": False}
            except Exception as err:  # the client raises on any non-200 answer
                report["bad"][name] = {"refused": True, "message": str(getattr(err, "msg", err))[:400]}

    for fn in (variants, prompts, *((pacs,) if args.series else ()), samples, session, bad):
        try:
            fn()
        except Exception:
            errors[fn.__name__] = traceback.format_exc()
    report["datastore"] = client.datastore()
    report["stats"] = json.loads(Utils.http_method("GET", args.server, "/datastore/?output=stats")[1])
    report["errors"] = errors
    return report


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--server", required=True)
    p.add_argument("--ct", required=True)
    p.add_argument("--work", required=True)
    p.add_argument("--series")
    p.add_argument("--client-module")
    args = p.parse_args()
    os.makedirs(args.work, exist_ok=True)
    try:
        report = run(args)
    except Exception:
        report = {"error": traceback.format_exc()}
    json.dump(report, sys.stdout, default=str)


if __name__ == "__main__":
    main()
