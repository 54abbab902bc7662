#!/usr/bin/env bash
# One-time (and idempotent) set-up of a fresh Debian 12 machine with Node 20:
#   1. Debian packages: Orthanc + DICOMweb + GDCM plugins (the embedded PACS), dicom3tools (dciodvfy,
#      validates SEG), dcmtk (dcmcjpeg writes the JPEG Lossless test series), python3-venv,
#      python3-torch + python3-onnx (the models' PyTorch, CPU), libopenblas0-pthread (without it
#      Debian's torch runs its matrix products on the reference BLAS, 8-15x slower), chromium (the
#      browser tests drive it with playwright-core), redis-server (the Redis job queue and its tests);
#      installed only when missing (needs root or sudo).
#   2. npm dependencies (npm ci; builds dist/ and the OHIF extension through the prepare script).
#      onnxruntime-node's postinstall would download CUDA libraries, which fails offline:
#      ONNXRUNTIME_NODE_INSTALL=skip.
#   3. The prebuilt OHIF viewer, @ohif/app pinned in package.json (scripts/fetch-viewer.sh).
#   4. models/.venv with the pinned Python packages (scripts/setup-python.sh).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

packages=(orthanc orthanc-dicomweb orthanc-gdcm dicom3tools dcmtk python3-venv python3-pip python3-torch python3-onnx libopenblas0-pthread chromium fonts-liberation redis-server)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing Debian packages: ${missing[*]}"
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  # policy-rc.d may refuse to start Debian's own Orthanc service; that is fine, ldfsam starts its own.
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  echo "setup: npm ci"
  ONNXRUNTIME_NODE_INSTALL=skip npm ci --no-audit --no-fund
else
  npm run --silent build
fi

bash scripts/fetch-viewer.sh
bash scripts/setup-python.sh
echo "setup: done"
