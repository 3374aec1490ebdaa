"""DreamPRM: the shared core of the pipeline's stages, and the public API for a trained PRM.

    from dreamprm import PRMScorer      # dreamprm/api.py: load a PRM, score the steps of (image, question, response)
"""


def __getattr__(name):  # lazy: importing the package for a stage that needs no torch stays cheap
    if name in ("PRMScorer", "StepScores"):
        from . import api
        return getattr(api, name)
    raise AttributeError(f"module 'dreamprm' has no attribute {name!r}")
