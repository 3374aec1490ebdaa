"""Shared fixtures: tiny random models (built once per session, offline) and small images; `load_script`."""
import importlib.util
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]


def load_script(rel: str):
    """Import a stage script (e.g. MC/estimate.py) by path: the stage folders are not packages."""
    path = ROOT / rel
    spec = importlib.util.spec_from_file_location(f"script_{path.parent.name}_{path.stem}", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory):
    from dreamprm.miniworld.tiny import build_all

    return build_all(tmp_path_factory.mktemp("tiny"))


@pytest.fixture(scope="session")
def images():
    rng = np.random.default_rng(0)
    sizes = [(56, 56), (64, 96), (200, 100), (30, 30)]
    return [Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)) for h, w in sizes]
