"""The venv holds exactly the versions models/pyproject.toml pins (a drifted venv fails here)."""
import importlib.metadata
import pathlib
import re

PYPROJECT = pathlib.Path(__file__).resolve().parents[1] / "pyproject.toml"


def pins():
    text = PYPROJECT.read_text()
    return dict(re.findall(r'"([A-Za-z0-9_.-]+)==([0-9][^"]*)"', text))


def test_every_pin_is_installed_at_its_version():
    found = pins()
    assert "pydicom" in found and "numpy" in found
    for name, version in found.items():
        assert importlib.metadata.version(name) == version, name


def test_pydicom_decodes_jpeg2000_and_rle():
    from pydicom.pixels.decoders import JPEG2000LosslessDecoder, RLELosslessDecoder

    assert JPEG2000LosslessDecoder.is_available
    assert RLELosslessDecoder.is_available
