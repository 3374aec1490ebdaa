"""Shared fixtures: tiny random models (built once per session, offline) and small images."""
import numpy as np
import pytest
from PIL import Image


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory):
    from dreamprm.tiny import build_all

    return build_all(tmp_path_factory.mktemp("tiny"))


@pytest.fixture(scope="session")
def images():
    rng = np.random.default_rng(0)
    sizes = [(56, 56), (64, 96), (200, 100), (30, 30)]
    return [Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)) for h, w in sizes]
