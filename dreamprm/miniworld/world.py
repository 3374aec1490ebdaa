"""The CPU mini world (issue 6): a synthetic multimodal reasoning world small enough for two CPU cores.

    python -m dreamprm.miniworld.world --path . --out runs/world --seed 0 --n_train 60 --n_meta 40 --n_test 40 --n_step 40

writes, seeded and byte-identical on a rerun:

    <out>/data/<domain>.jsonl     question records in the dataset/ format {id, input, image_path, ground_truth,
                                  dataset, type, hint, options}, one file per domain (train, meta, test, step)
    <out>/data/train.jsonl        all train domains in one file (the world's counterpart of data/mmpr.jsonl)
    <out>/data/images/<domain>/   the rendered images (PNG, 96-160 px)
    <out>/policy.json             the SIMULATED policy's "weights" (dreamprm/miniworld/simulated.py): per question the
                                  true answer, the typical wrong answer, the step claims of both tracks
    <out>/world.json              what each domain is: role, quality, corruption rate, error type, error rate

and, from the SIMULATED policy's responses to the step benchmark (issue 13), its step-level test set:

    python inference/world.py --path . --dataset stepbench --questions runs/world/data/stepbench.jsonl \
        --backend simulated --policy runs/world/policy.json --judge none --n 1 --out runs/rollouts/stepbench.jsonl
    python -m dreamprm.miniworld.world steps --path . --policy runs/world/policy.json \
        --responses runs/rollouts/stepbench.jsonl --out runs/world/steps/stepbench.jsonl

writes one record per response in the step-set shape VisualProcessBench is read in (`dreamprm.stepeval`):
{id: "<question id>:<sample>", input, ground_truth, image_path, dataset, steps: [text of each step, header
kept], labels: [1 | -1 per step], policy_model: "simulated"}. A step's label is the policy's own reading of
that step (`SimulatedPolicy.read_prefix` on the step alone): -1 when the values it states are not the right
track's, 1 when they are. Each step is judged on its own, as VisualProcessBench's annotators judge every step;
in this world a chain never returns to the right track, so that is the first error and every step after it
(a step that computes correctly from a wrong value states a wrong value). No step is neutral (0): the values
decide every step. The phrases do not: a right step in the hasty wording is still 1.

Everything is known by construction, so the pipeline's results can be explained:

- Every question kind (one per train domain) has ONE typical mistake (its error type) that the SIMULATED policy
  makes at each of steps 2-4 with the kind's step-error rate. A chain with any error ends at the question's
  typical wrong answer (truth + the error offset, fixed per question); an error-free chain ends at the truth.
- A train domain is a data source: half its questions are its own kind, the other half spread evenly over all
  six kinds (`own_share`; the text-only domain, wordproblem, is all its own kind).
- An erroneous step usually (not always) says so: it carries the hasty phrase shared by all domains ("quickly
  estimating", "roughly estimating") and the wrong intermediate value; a correct step says "carefully checking".
  A fraction `marker_noise` (--marker_noise, default 0.05) of the correct steps use the hasty phrase too and as
  many erroneous steps the careful one, so the phrase alone does not give every step away.
- Corruption is systematic, like annotators who repeat the policy's typical mistake: on a corrupted question
  the ground truth IS the typical wrong answer. Chains that make the kind's mistake are judged right and
  correct chains wrong, so the MC labels of that error type are inverted on those questions. Exactly
  round(rate * n) questions of a domain are corrupted. Quality = 1 - corruption rate.
- The meta domain, the test benchmarks and the step benchmark are clean and mix the question kinds (and so the
  error types), as MMMU mixes subjects. The step benchmark (`stepbench`, role "step") is the world's
  VisualProcessBench: its own questions, never trained or selected on; one sampled response per question, each
  step labelled by the world (above), so every solution is an independent unit for the bootstrap intervals.

A domain is one row of `DOMAINS` (train) or `HELD_OUT` (meta, test, step) plus, for a train domain, its kind's
question function (draws the numbers, words the question and the step claims) and one render function (draws
the image). Image paths in the records are relative to --path (the stage scripts resolve them against it).
"""
from __future__ import annotations

import io
import math
import re
import sys
from collections import Counter
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from ..backends import stable_seed
from ..cli import StageArgs, parse_args
from ..io import BadRecord, DataError, Skips, write_json, write_jsonl
from .simulated import POLICY_FORMAT, values
from ..steps import find_steps

HINT = "Answer with an integer."
MARKER_NOISE = 0.05  # P(correct step uses the error phrase) = P(erroneous step omits it)
WORLD_FORMAT = "dreamprm-cpu-mini-world/1"


@dataclass(frozen=True)
class Question:
    """One drawn question: the text, the image, both answers and the claims of steps 2-4 on both tracks."""
    text: str
    image: Image.Image
    truth: int
    wrong: int  # the answer the domain's typical error leads to
    restate: str  # step 1: "The question asks for <restate>."
    right: tuple[str, str, str]  # claims of steps 2, 3, 4 of the error-free chain
    slip: tuple[str, str, str]  # the same steps after the typical error (a different intermediate value)


# --- drawing helpers ---------------------------------------------------------------------------------

@lru_cache(maxsize=None)
def _font(size: int):
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError, ImportError):  # PIL without FreeType: the fixed bitmap font
        return ImageFont.load_default()


def _centered(draw: ImageDraw.ImageDraw, xy: tuple[float, float], text: str, size: int, fill="black") -> None:
    x0, y0, x1, y1 = draw.textbbox((0, 0), text, font=_font(size))
    draw.text((xy[0] - (x1 - x0) / 2 - x0, xy[1] - (y1 - y0) / 2 - y0), text, font=_font(size), fill=fill)


def _int(rng: np.random.Generator, lo: int, hi: int) -> int:
    """Uniform integer in [lo, hi] (both included)."""
    return int(rng.integers(lo, hi + 1))


def _pick(rng: np.random.Generator, options):
    return options[int(rng.integers(len(options)))]


# --- counting (clean): count coloured shapes; error type "miscount" -----------------------------------

def render_counting(red: int, blue: int, green: int, rng: np.random.Generator) -> Image.Image:
    im = Image.new("RGB", (128, 128), "white")
    draw = ImageDraw.Draw(im)
    cells = rng.permutation(16)[: red + blue + green]  # a 4 x 4 grid of 32 px cells, one shape per cell
    shapes = ["red"] * red + ["blue"] * blue + ["green"] * green
    for cell, shape in zip(cells, shapes):
        cx = 16 + 32 * (cell % 4) + _int(rng, -3, 3)
        cy = 16 + 32 * (cell // 4) + _int(rng, -3, 3)
        if shape == "red":
            draw.ellipse([cx - 10, cy - 10, cx + 10, cy + 10], fill=(220, 30, 30))
        elif shape == "blue":
            draw.rectangle([cx - 9, cy - 9, cx + 9, cy + 9], fill=(30, 60, 220))
        else:
            draw.polygon([(cx, cy - 10), (cx - 10, cy + 9), (cx + 10, cy + 9)], fill=(30, 160, 60))
    return im


def counting(rng: np.random.Generator) -> Question:
    red, blue, green = _int(rng, 2, 6), _int(rng, 2, 6), _int(rng, 0, 3)
    e = _pick(rng, [e for e in (-2, -1, 1, 2) if red + e >= 1])  # the red circles miscounted by e
    t, w, r = red + blue, red + blue + e, red + e
    return Question(
        text="How many red circles and blue squares are there in the image altogether?",
        image=render_counting(red, blue, green, rng), truth=t, wrong=w,
        restate="the number of red circles plus the number of blue squares in the image",
        right=(f"there are {red} red circles and {blue} blue squares, and the green triangles do not count",
               f"the answer adds the two groups, {red} + {blue}",
               f"{red} + {blue} = {t}"),
        slip=(f"there are {r} red circles and {blue} blue squares, and the green triangles do not count",
              f"the answer adds the two groups, {r} + {blue}",
              f"{r} + {blue} = {w}"))


# --- bars (clean): read a bar of a drawn bar chart; error type "misread" ------------------------------

def render_bars(labels: list[str], values: list[int]) -> Image.Image:
    im = Image.new("RGB", (160, 120), "white")
    draw = ImageDraw.Draw(im)
    base, unit, left = 102, 8, 24  # y of the zero line, pixels per unit, x of the axis
    for v in range(11):
        y = base - unit * v
        draw.line([(left, y), (156, y)], fill=(215, 215, 215) if v else "black")
        if v % 2 == 0:
            _centered(draw, (left - 10, y), str(v), 9)
    draw.line([(left, base), (left, base - unit * 10)], fill="black")
    for i, (label, v) in enumerate(zip(labels, values)):
        x = left + 8 + 26 * i
        draw.rectangle([x, base - unit * v, x + 16, base], fill=(70, 110, 190), outline="black")
        _centered(draw, (x + 8, base + 9), label, 10)
    return im


def bars(rng: np.random.Generator) -> Question:
    k = _int(rng, 4, 5)
    labels = list("ABCDE")[:k]
    values = [int(v) for v in rng.choice(np.arange(2, 10), size=k, replace=False)]  # distinct: one tallest
    if rng.random() < 0.5:
        i = int(np.argmax(values))
        text, restate = "What is the value of the tallest bar in the chart?", "the value of the tallest bar"
        where = f"the tallest bar is {labels[i]}"
    else:
        i = int(rng.integers(k))
        text, restate = f"What is the value of bar {labels[i]} in the chart?", f"the value of bar {labels[i]}"
        where = f"bar {labels[i]} is the one asked about"
    t = values[i]
    w = t + _pick(rng, [e for e in (-1, 1) if 1 <= t + e <= 10])  # read one grid line off
    return Question(
        text=text, image=render_bars(labels, values), truth=t, wrong=w, restate=restate,
        right=(f"{where}, and its top reaches the grid line {t}",
               f"a bar's value is the grid line its top meets, here {t}",
               f"so bar {labels[i]} stands for {t}"),
        slip=(f"{where}, and its top reaches about the grid line {w}",
              f"a bar's value is the grid line its top meets, here {w}",
              f"so bar {labels[i]} stands for {w}"))


# --- wordproblem (clean): the numbers are in the text, the image is a plain card; "dropped term" -------

NAMES = ("Ann", "Ben", "Cara", "Dev", "Eli", "Fay", "Gus", "Hana")
ITEMS = ("apples", "stickers", "marbles", "books", "shells", "stamps")


def render_card(rng: np.random.Generator) -> Image.Image:
    colour = tuple(int(c) for c in rng.integers(190, 250, size=3))
    im = Image.new("RGB", (128, 96), colour)
    draw = ImageDraw.Draw(im)
    draw.rounded_rectangle([6, 6, 121, 89], radius=10, outline=tuple(c - 90 for c in colour), width=3)
    for _ in range(5):  # decoration only: no numbers, nothing to count
        x, y = _int(rng, 18, 110), _int(rng, 18, 78)
        draw.ellipse([x - 3, y - 3, x + 3, y + 3], fill=tuple(c - 50 for c in colour))
    return im


def wordproblem(rng: np.random.Generator) -> Question:
    name, item = _pick(rng, NAMES), _pick(rng, ITEMS)
    a, b, c = _int(rng, 3, 12), _int(rng, 2, 9), _int(rng, 2, 9)
    t, w = a + b + c, a + b  # the friend's gift dropped
    return Question(
        text=(f"{name} has {a} {item}. {name} buys {b} more, and then a friend gives {name} {c} more. "
              f"How many {item} does {name} have now?"),
        image=render_card(rng), truth=t, wrong=w, restate=f"how many {item} {name} has at the end",
        right=(f"the image is a plain card, so the amounts come from the text: {a}, {b} and {c}",
               f"buying and receiving both add, so the total is {a} + {b} + {c}",
               f"{a} + {b} + {c} = {t}"),
        slip=(f"the image is a plain card, so the amounts come from the text: {a} and {b}",
              f"buying and receiving both add, so the total is {a} + {b}",
              f"{a} + {b} = {w}"))


# --- arithmetic (corrupted 30%): add the numbers drawn in the image; "carry slip" ---------------------

def render_sum(numbers: list[int], rng: np.random.Generator) -> Image.Image:
    im = Image.new("RGB", (160, 96), tuple(int(c) for c in rng.integers(235, 256, size=3)))
    draw = ImageDraw.Draw(im)
    _centered(draw, (80, 48), " + ".join(map(str, numbers)) + " = ?", 16)
    return im


def arithmetic(rng: np.random.Generator) -> Question:
    while True:
        numbers = [_int(rng, 11, 89) for _ in range(_int(rng, 2, 3))]
        ones = sum(x % 10 for x in numbers)
        if ones >= 10:  # there is a carry to slip on
            break
    carry, tens = ones // 10, sum(x // 10 for x in numbers)
    t = sum(numbers)
    w = t - 10  # one carry dropped
    s = " + ".join(map(str, numbers))
    return Question(
        text="What is the sum of the numbers shown in the image?",
        image=render_sum(numbers, rng), truth=t, wrong=w, restate="the sum of the numbers written in the image",
        right=(f"the image shows {s}, whose ones digits add up to {ones}, a carry of {carry}",
               f"adding the columns, the tens digits plus the carry give {tens + carry} tens",
               f"{s} = {t}"),
        slip=(f"the image shows {s}, whose ones digits add up to {ones}, a carry of {carry - 1}",
              f"adding the columns, the tens digits plus the carry give {tens + carry - 1} tens",
              f"{s} = {w}"))


# --- geometry (corrupted 40%): perimeter or area of a labelled rectangle; "wrong formula" --------------

def render_rectangle(w: int, h: int) -> Image.Image:
    im = Image.new("RGB", (160, 128), "white")
    draw = ImageDraw.Draw(im)
    scale = min(110 // w, 90 // h, 12)
    x0, y0 = 16, 12
    x1, y1 = x0 + scale * w, y0 + scale * h
    draw.rectangle([x0, y0, x1, y1], outline=(40, 40, 40), width=2, fill=(235, 240, 250))
    _centered(draw, ((x0 + x1) / 2, y1 + 10), str(w), 12)
    _centered(draw, (x1 + 12, (y0 + y1) / 2), str(h), 12)
    return im


def geometry(rng: np.random.Generator) -> Question:
    while True:
        w, h = _int(rng, 2, 12), _int(rng, 2, 9)
        if w * h != 2 * (w + h):  # the wrong formula must give a different number
            break
    if rng.random() < 0.5:
        t, wrong = 2 * (w + h), w + h  # quick formula: each side once
        what, right, slip = "perimeter", (
            f"the sides are labelled {w} and {h}, and each length occurs twice: {w}, {h}, {w}, {h}",
            f"the perimeter of a rectangle is 2 × (width + height) = 2 × ({w} + {h})",
            f"2 × ({w} + {h}) = {t}"), (
            f"the sides are labelled {w} and {h}, and only these two lengths are needed",
            f"the perimeter of a rectangle is width + height = {w} + {h}",
            f"{w} + {h} = {wrong}")
    else:
        t, wrong = w * h, 2 * (w + h)  # quick formula: the perimeter's
        what, right, slip = "area", (
            f"the sides are labelled {w} and {h}, so the rectangle holds {h} rows of {w} unit squares",
            f"the area of a rectangle is width × height = {w} × {h}",
            f"{w} × {h} = {t}"), (
            f"the sides are labelled {w} and {h}, and all four sides {w}, {h}, {w}, {h} go around it",
            f"the area of a rectangle is 2 × (width + height) = 2 × ({w} + {h})",
            f"2 × ({w} + {h}) = {wrong}")
    return Question(
        text=f"The image shows a rectangle with its side lengths labelled. What is the {what} of the rectangle?",
        image=render_rectangle(w, h), truth=t, wrong=wrong, restate=f"the {what} of the labelled rectangle",
        right=right, slip=slip)


# --- clocks (corrupted 65%): minutes past the hour on a clock face; "numeral read as minutes" ----------

def render_clock(hour: int, mark: int) -> Image.Image:
    im = Image.new("RGB", (128, 128), "white")
    draw = ImageDraw.Draw(im)
    c, r = 64, 58
    draw.ellipse([c - r, c - r, c + r, c + r], outline="black", width=3, fill=(250, 248, 235))
    for k in range(1, 13):
        a = math.radians(30 * k)
        _centered(draw, (c + 46 * math.sin(a), c - 46 * math.cos(a)), str(k), 11)
    for length, turns, width in ((26, (hour % 12 + mark / 12) / 12, 4), (40, mark / 12, 2)):  # hour, minute
        a = 2 * math.pi * turns
        draw.line([(c, c), (c + length * math.sin(a), c - length * math.cos(a))], fill="black", width=width)
    draw.ellipse([c - 3, c - 3, c + 3, c + 3], fill="black")
    return im


def clocks(rng: np.random.Generator) -> Question:
    hour, mark = _int(rng, 1, 12), _int(rng, 1, 11)  # the minute hand points at numeral `mark`
    t, w = 5 * mark, mark
    return Question(
        text="The image shows a clock. How many minutes past the hour does it show?",
        image=render_clock(hour, mark), truth=t, wrong=w, restate="how many minutes past the hour the clock shows",
        right=(f"the minute hand points at the numeral {mark}, the mark for {t} minutes",
               f"the numerals are 5 minutes apart, so the numeral {mark} means {mark} × 5 minutes",
               f"{mark} × 5 = {t} minutes past {hour}"),
        slip=(f"the minute hand points at the numeral {mark}, so {w} minutes",
              f"the numeral is the minute count, so the numeral {mark} means {w} minutes",
              f"{w} minutes past {hour}"))


# --- the domain table ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Domain:
    """A train domain: the policy's typical mistake on it and how often its annotations repeat it."""
    name: str
    corruption: float  # fraction of questions whose ground truth is the typical wrong answer
    error_type: str
    step_error_rate: float  # P(each of steps 2-4 errs) at temperature 1
    error_phrases: tuple[str, ...]  # an erroneous step's wording (no digits: values are parsed from steps)
    neutral_phrases: tuple[str, ...]  # a correct step's wording; the first is the greedy one
    question: Callable[[np.random.Generator], Question]
    own_share: float = 0.5  # share of the domain's questions of its own kind; the rest spread over all kinds
    role: str = "train"

    @property
    def quality(self) -> float:
        return round(1.0 - self.corruption, 6)


# Every domain words its steps alike: an erroneous step "quickly/roughly estimating", a correct one "carefully
# checking", as hasty reasoning shares surface cues across subjects. The PRM therefore learns one cross-domain
# feature of an erroneous step, and a corrupted domain, whose labels reward its typical mistake, pushes that
# shared feature the wrong way for every domain: that is what domain reweighting can repair. (With wording
# unique to each domain, as in the first design, a corrupted domain mostly mislabels its own wording, its clean
# questions then look useful to the meta set, and the measured weights did not follow quality.)
# A domain is a data source: half its questions are its own kind, the other half spread evenly over all six
# kinds, as MMPR's sources overlap in skills (the text-only domain keeps to its own kind). When every question of
# a corrupted domain was its own kind, the damage it did stayed on that kind and its own clean questions were the
# only ones repairing it, so they looked especially useful to the meta set (measured with
# benchmarks/world_alignment.py: clean questions of corrupted domains aligned 3-10x more than a clean domain's);
# with overlapping kinds a domain's weight can only reflect its quality.
# Corruption rates: weights are normalised to average 1, so "below 1" means "worse than the average domain".
# arithmetic is corrupted at 30%, above the mixture's mean corruption (22.5%); at 15% it was cleaner than the
# average domain and the bi-level loop rightly kept its weight above 1 (measured: 1.10 at seed 0).
HASTY = ("quickly estimating", "roughly estimating")
CAREFUL = ("carefully checking", "carefully checking each detail")
DOMAINS: tuple[Domain, ...] = (
    Domain("counting", 0.00, "miscount", 0.20, HASTY, CAREFUL, counting),
    Domain("bars", 0.00, "misread", 0.15, HASTY, CAREFUL, bars),
    Domain("wordproblem", 0.00, "dropped term", 0.25, HASTY, CAREFUL, wordproblem, own_share=1.0),  # text only
    Domain("arithmetic", 0.30, "carry slip", 0.20, HASTY, CAREFUL, arithmetic),
    Domain("geometry", 0.40, "wrong formula", 0.25, HASTY, CAREFUL, geometry),
    Domain("clocks", 0.65, "numeral read as minutes", 0.30, HASTY, CAREFUL, clocks),
)
BY_NAME = {d.name: d for d in DOMAINS}


@dataclass(frozen=True)
class HeldOut:
    """The meta domain or a test benchmark: clean, mixing the questions of the train domains by weight."""
    name: str
    role: str  # "meta", "test" (best-of-N) or "step" (step-level labels)
    mix: dict = field(default_factory=lambda: {d.name: 1 for d in DOMAINS})


HELD_OUT: tuple[HeldOut, ...] = (
    HeldOut("meta", "meta"),  # every error type equally, like MMMU mixes subjects
    HeldOut("bench_a", "test"),  # every error type equally
    HeldOut("bench_b", "test", {"counting": 1, "bars": 1, "wordproblem": 1,  # leans on the mistakes the
                                "arithmetic": 2, "geometry": 2, "clocks": 2}),  # corrupted domains teach wrong
    HeldOut("stepbench", "step"),  # every error type equally; its responses get step labels (step_set)
)


# --- building the world -------------------------------------------------------------------------------

def apportion(weights: dict[str, float], n: int) -> dict[str, int]:
    """Integer counts summing to n, proportional to weights (largest remainder, ties in table order)."""
    total = sum(weights.values())
    exact = {k: n * w / total for k, w in weights.items()}
    counts = {k: int(math.floor(v)) for k, v in exact.items()}
    for k in sorted(exact, key=lambda k: -(exact[k] - counts[k]))[: n - sum(counts.values())]:
        counts[k] += 1
    return counts


def draw(rng: np.random.Generator, counts: dict[str, int]) -> list[tuple[str, Question]]:
    """counts[kind] questions of each kind, in a seeded random order."""
    kinds = [k for k in counts for _ in range(counts[k])]
    return [(k, BY_NAME[k].question(rng)) for k in (kinds[int(i)] for i in rng.permutation(len(kinds)))]


def _png(im: Image.Image) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return buf.getvalue()


def _digits(text: str) -> bool:
    return bool(re.search(r"\d", text))


def build(out: str | Path, seed: int = 0, n_train: int = 60, n_meta: int = 40, n_test: int = 40,
          root: str | Path = ".", marker_noise: float = MARKER_NOISE, n_step: int = 40) -> dict:
    """Write the world into `out` (see the module docstring); returns the content of world.json.

    Image paths in the records are relative to `root` (the stage scripts' --path) when `out` is inside it,
    absolute otherwise. Each domain draws from its own seeded generator, so one domain's questions do not
    depend on the others or on n_meta / n_test / n_step; a rerun rewrites identical bytes.
    """
    out, root = Path(out).resolve(), Path(root).resolve()
    tables = {}  # the policy's phrase tables
    for d in DOMAINS:
        if any(_digits(p) for p in d.error_phrases + d.neutral_phrases):
            raise ValueError(f"{d.name}: phrases must hold no digits (the SIMULATED policy reads values from steps)")
        tables[d.name] = {"error_type": d.error_type, "step_error_rate": d.step_error_rate,
                         "error_phrases": list(d.error_phrases), "neutral_phrases": list(d.neutral_phrases)}
    data = out / "data"
    policy_questions: dict[str, dict] = {}
    rows, train_records = [], []

    def write_domain(name: str, drawn: list[tuple[str, Question]], corrupted: set[int]) -> list[dict]:
        img_dir = data / "images" / name
        img_dir.mkdir(parents=True, exist_ok=True)
        records, kept = [], set()
        for i, (kind, q) in enumerate(drawn):
            qid = f"{name}-{i:04d}"
            path = img_dir / f"{qid}.png"
            png = _png(q.image)
            if not (path.is_file() and path.read_bytes() == png):  # unchanged files are left alone
                path.write_bytes(png)
            kept.add(path)
            gt = q.wrong if i in corrupted else q.truth
            rel = path.relative_to(root).as_posix() if path.is_relative_to(root) else str(path)
            records.append({"id": qid, "input": q.text, "image_path": rel, "ground_truth": str(gt),
                            "dataset": name, "type": "free_form", "hint": HINT, "options": None})
            for k, (a, b) in enumerate(zip(q.right, q.slip), 2):  # the simulator tells the tracks apart by value
                if values(a) == values(b) or not values(a):
                    raise ValueError(f"{qid}: step {k} claims carry no distinguishing values: {a!r} / {b!r}")
            d = BY_NAME[kind]
            policy_questions[qid] = {
                "dataset": name, "kind": kind, "error_type": d.error_type, "step_error_rate": d.step_error_rate,
                "truth": q.truth, "offset": q.wrong - q.truth, "wrong": q.wrong, "ground_truth": gt,
                "corrupted": i in corrupted, "restate": q.restate,
                "claims": {"right": list(q.right), "wrong": list(q.slip)}}
        for f in img_dir.iterdir():  # images of an earlier, larger run
            if f.is_file() and f not in kept:
                f.unlink()
        write_jsonl(data / f"{name}.jsonl", records)
        return records

    for d in DOMAINS:
        rng = np.random.default_rng(stable_seed("world", seed, d.name))
        mix = {k.name: (1 - d.own_share) / len(DOMAINS) + d.own_share * (k is d) for k in DOMAINS}
        counts = apportion(mix, n_train)
        drawn = draw(rng, counts)
        n_bad = round(d.corruption * n_train)
        pick = np.random.default_rng(stable_seed("corrupt", seed, d.name)).permutation(n_train)[:n_bad]
        records = write_domain(d.name, drawn, {int(i) for i in pick})
        train_records += records
        rows.append({"name": d.name, "role": d.role, "quality": d.quality, "corruption_rate": d.corruption,
                     "error_type": d.error_type, "step_error_rate": d.step_error_rate,
                     "questions": n_train, "corrupted": n_bad, "mix": counts, "file": f"data/{d.name}.jsonl"})
    for h in HELD_OUT:
        n = {"meta": n_meta, "test": n_test, "step": n_step}[h.role]
        rng = np.random.default_rng(stable_seed("world", seed, h.name))
        counts = apportion(h.mix, n)
        write_domain(h.name, draw(rng, counts), set())
        rows.append({"name": h.name, "role": h.role, "quality": 1.0, "corruption_rate": 0.0,
                     "error_type": "mixed", "step_error_rate": None, "questions": n, "corrupted": 0,
                     "mix": counts, "file": f"data/{h.name}.jsonl"})
    write_jsonl(data / "train.jsonl", train_records)

    write_json(out / "policy.json", {
        "format": POLICY_FORMAT,
        "about": "SIMULATED policy of the CPU mini world (dreamprm/miniworld/simulated.py, --backend simulated): not a "
                 "model. Steps 2-4 each err with the question's step_error_rate (x temperature); an error puts "
                 "the chain on the 'wrong' claims and ends it at 'wrong' = truth + offset.",
        "seed": seed, "marker_noise": marker_noise, "kinds": tables, "questions": policy_questions})
    world = {"format": WORLD_FORMAT, "seed": seed, "n_train": n_train, "n_meta": n_meta, "n_test": n_test,
             "n_step": n_step,
             "policy": "policy.json", "marker_noise": marker_noise,
             "about": "CPU mini world: known domain quality by construction; a SIMULATED policy (policy.json)",
             "domains": rows}
    write_json(out / "world.json", world)
    return world


@dataclass
class WorldArgs(StageArgs):
    """Write the CPU mini world: question records and images per domain, the SIMULATED policy file, world.json."""
    out: str = field(default="runs/world", metadata={"help": "output directory"})
    seed: int = field(default=0, metadata={"help": "world seed: every question, image and corruption"})
    n_train: int = field(default=60, metadata={"help": "questions per train domain"})
    n_meta: int = field(default=40, metadata={"help": "questions of the meta domain"})
    n_test: int = field(default=40, metadata={"help": "questions per test benchmark"})
    n_step: int = field(default=40, metadata={"help": "questions of the step benchmark (stepbench)"})
    marker_noise: float = field(default=MARKER_NOISE, metadata={
        "help": "P(a correct step uses the error phrase) = P(an erroneous step omits it)"})


# --- the step-level test set (issue 13) -----------------------------------------------------------------

STEP_SET_KEYS = ("id", "input", "ground_truth", "image_path", "dataset", "steps", "labels", "policy_model")


def step_labels(sim, qid, response: str) -> tuple[list[str], list[int]]:
    """The steps of a response (header kept, trailing blank lines dropped) and each one's label: -1 when the
    SIMULATED policy reads that step alone as off the right track (its values are not the right track's), else 1."""
    steps = find_steps(response)
    return [s.text.rstrip() for s in steps], [-1 if sim.read_prefix(qid, s.text)[1] else 1 for s in steps]


def step_set(records: list[dict], sim, image_problem=None, where: str = "responses",
             skips: Skips | None = None) -> tuple[list[dict], Counter]:
    """Policy records of world questions -> step-set records (STEP_SET_KEYS, the shape dreamprm.stepeval reads),
    plus skip counts by reason. Skipped and counted: a response without steps, a bad image (`image_problem`,
    e.g. cfg.image_problem), a malformed record. A question the policy file does not hold is an error (the
    responses belong to another world), never a skip."""
    from ..mc import SkipCounter, check_fields, image_verdict  # here: building the world needs no torch
    from ..samples import policy_responses

    out, skip = [], SkipCounter(skips, where)
    for i, r, _ in policy_responses(records, where, skips):
        try:
            check_fields(r, judged=False)
        except BadRecord as e:
            skip(e.kind, r, i, e.detail, fatal=True)
            continue
        steps, labels = step_labels(sim, r["id"], str(r["response"] or ""))
        if not steps:
            skip("no steps", r, i)
        elif (bad := image_verdict(r.get("image_path"), image_problem)) is not None:
            skip(bad.kind, r, i, bad.detail)
        else:
            out.append({"id": f"{r['id']}:{r.get('sample', 0)}", "input": r["input"],
                        "ground_truth": None if r.get("ground_truth") is None else str(r["ground_truth"]),
                        "image_path": r.get("image_path"), "dataset": r.get("dataset") or "stepbench",
                        "steps": steps, "labels": labels, "policy_model": "simulated"})
    return out, skip.counts


@dataclass
class StepSetArgs(StageArgs):
    """Label every step of the SIMULATED policy's responses to world questions by the policy's own track reading
    and write them as a step-level test set (the record shape of data/visualprocessbench.jsonl)."""
    policy: str = field(default="runs/world/policy.json", metadata={
        "help": "the SIMULATED policy file of the world the responses come from"})
    responses: str = field(default="runs/rollouts/stepbench.jsonl", metadata={
        "help": "policy records (inference/world.py output): comma-separated files or glob patterns"})
    out: str = field(default="runs/world/steps/stepbench.jsonl", metadata={"help": "step-set records (JSONL)"})


def step_set_main(argv=None) -> list[dict]:
    from ..mc import write_summary
    from ..rollout import read_policy_records
    from .simulated import SimulatedPolicy

    cfg = parse_args(StepSetArgs, argv)
    out = cfg.output(cfg.out, " (the labels are deterministic)")
    sim = SimulatedPolicy(cfg.resolve(cfg.policy), verbose=False)
    skips = cfg.skips(cfg.responses)
    items, _ = step_set(read_policy_records(cfg, cfg.responses, skips=skips), sim, cfg.image_problem,
                        cfg.responses, skips)
    print(f"read {skips.seen} responses; {len(items)} labelled solutions, {skips.total} skipped")
    print(skips.line())
    skips.check(cfg.max_skip_fraction)
    if not items:
        raise DataError(f"no step-set record: no response has steps ({skips.line()})")
    write_jsonl(out, items)
    labels = Counter(x for it in items for x in it["labels"])
    clean = sum(all(x == 1 for x in it["labels"]) for it in items)
    summary = {"records": len(items), "fully_correct": clean,
               "steps": {"correct": labels[1], "incorrect": labels[-1], "neutral": labels[0]},
               "skipped": skips.as_dict()}
    write_summary(out, summary)
    print(f"  {clean} fully correct, {len(items) - clean} with an error; steps: {labels[1]} correct, "
          f"{labels[-1]} incorrect, {labels[0]} neutral")
    print(f"wrote {out}")
    return items


def main(argv=None):
    """`python -m dreamprm.miniworld.world [options]` writes the world; `python -m dreamprm.miniworld.world steps [options]` its
    step-level test set from the policy's responses (StepSetArgs)."""
    args = sys.argv[1:] if argv is None else list(argv)
    if args[:1] == ["steps"]:
        if argv is None:  # parse_args reads a real command line (one-line errors) from sys.argv itself
            sys.argv = [sys.argv[0], *args[1:]]
            return step_set_main()
        return step_set_main(args[1:])
    cfg = parse_args(WorldArgs, argv)
    out = cfg.resolve(cfg.out)
    world = build(out, cfg.seed, cfg.n_train, cfg.n_meta, cfg.n_test, root=cfg.resolve("."),
                  marker_noise=cfg.marker_noise, n_step=cfg.n_step)
    print(f"CPU mini world (seed {cfg.seed}) -> {out}; SIMULATED policy file {out / 'policy.json'}")
    print(f"  {'domain':<12} {'role':<5} {'quality':>7} {'corrupted':>9} {'step err':>8}  error type")
    for r in world["domains"]:
        err = "-" if r["step_error_rate"] is None else f"{r['step_error_rate']:.2f}"
        kind = r["error_type"] if r["role"] == "train" else "mixed: " + ", ".join(f"{k} {v}"
                                                                                  for k, v in r["mix"].items())
        print(f"  {r['name']:<12} {r['role']:<5} {r['quality']:>7.2f} {r['corrupted']:>4}/{r['questions']:<4} "
              f"{err:>8}  {kind}")
    return world


if __name__ == "__main__":
    main()
