"""The domain table: the 15 MMPR training domains of the paper and their published weights (SPEC 1, 4).

The bi-level loop learns one weight per domain; domain names come from the `dataset` field of the train
records. `canonical` maps the spellings found in the released files to one name, so that a typo is a
clear error rather than a silent sixteenth domain.
"""
from __future__ import annotations

# Name -> learned weight of the paper's DreamPRM run (SPEC section 4), for the tables and figures.
PAPER_WEIGHTS = {
    "m3cot": 1.49, "figureqa": 1.47, "unigeo_calc": 1.16, "infographics": 1.16, "chartqa": 1.10,
    "geo170k": 1.06, "scienceqa": 1.05, "geos": 1.01, "geomverse": 0.98, "mapqa": 0.97, "CLEVR_math": 0.95,
    "geometry3k": 0.84, "dvqa": 0.79, "iconqa": 0.75, "ai2d": 0.55,
}
MMPR_DOMAINS = tuple(sorted(PAPER_WEIGHTS, key=str.lower))

_ALIASES = {"unigeo": "unigeo_calc", "clevr": "CLEVR_math", "clevr_math": "CLEVR_math",
            "infographicsvqa": "infographics", "infovqa": "infographics", "geometry3k_en": "geometry3k"}
_BY_LOWER = {d.lower(): d for d in MMPR_DOMAINS}


def canonical(name: str) -> str:
    """The table's spelling of an MMPR domain name, or the name unchanged when it is not an MMPR domain."""
    key = name.strip().lower()
    return _BY_LOWER.get(key) or _ALIASES.get(key) or name.strip()


def domain_table(names, allowed=None) -> list[str]:
    """Sorted distinct domain names seen in the data; an unknown one is an error when `allowed` is given."""
    seen = sorted({canonical(n) for n in names})
    if allowed is not None:
        unknown = [n for n in seen if n not in allowed]
        if unknown:
            raise ValueError(f"unknown domain(s) {', '.join(unknown)}; known: {', '.join(sorted(allowed))}")
    return seen
