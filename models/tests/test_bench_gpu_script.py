"""bench/gpu.py cannot rot between GPU machines: its code runs here on the CPU (`--device cpu`), and
without CUDA it says so and exits 2."""
import json
import subprocess
import sys
from pathlib import Path

import torch

SCRIPT = Path(__file__).resolve().parents[2] / "bench" / "gpu.py"


def test_gpu_script_runs_its_table_on_the_cpu(tmp_path):
    out = tmp_path / "gpu.json"
    r = subprocess.run([sys.executable, str(SCRIPT), "--device", "cpu", "--config", "tiny", "--max-batch", "2", "--repeats", "1", "--json", str(out)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    result = json.loads(out.read_text())
    rows = [(row["runtime"], row["precision"], row["batch"]) for row in result["rows"]]
    assert rows == [("pytorch", "fp32", 1), ("pytorch", "fp32", 2)]
    assert all(row["msPerSlice"] > 0 for row in result["rows"])
    assert "batch   2" in r.stdout and result["seconds"] > 0


def test_gpu_script_without_cuda_says_so():
    if torch.cuda.is_available():
        return
    r = subprocess.run([sys.executable, str(SCRIPT), "--config", "tiny"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "no CUDA device" in r.stderr
