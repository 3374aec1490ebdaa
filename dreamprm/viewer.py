"""A static HTML page of best-of-N runs (BoN/view.py): read a BoN run the way a person reads it, question by question.

Per question: the image, the question, the ground truth and the first N candidates (N = the largest N the run
selected at), each step's text shaded by its PRM score (red 0 .. yellow 0.5 .. green 1, the number beside it
and in its tooltip), the main PRM (DreamPRM) and the vanilla PRM side by side (two score chips per step), each
PRM's pick marked, each candidate right or wrong (`true_false`). Two filters, "the PRMs disagree" and "the pick
is wrong", show only the questions with that flag and count them; the state lives in the URL hash
(`index.html#filter=disagree,wrong`), so a filtered view can be linked to (and a test can open one).

Nothing is selected here: a pick is the run's own, from `<benchmark>.selected.jsonl` (BoN/pick.py, with the
aggregation, ties and N recorded in its results.json); the per-candidate aggregate shown beside it is
`bon.cot_scores` with that aggregation. Steps are `steps.find_steps`'s, the same cut the PRM scored.

One self-contained file: images downscaled and embedded as data: URIs, CSS and plain JavaScript inline, so it
works from file:// with no network. Every text is escaped (responses are untrusted), and the page's
Content-Security-Policy allows no network at all and runs only the page's own script (its sha256 is in the
policy): a `<script>` that got past escaping still would not run.
"""
from __future__ import annotations

import base64
import hashlib
import html
import io
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from .bon import Question, check_id, cot_scores, load_candidates, read_scores
from .cli import StageArgs
from .io import DataError, Skips, atomic_write_text, load_image, number, read_json, read_records
from .steps import find_steps


@dataclass
class ViewConfig(StageArgs):
    """A static HTML page of best-of-N runs: per question the candidates, their steps shaded by each PRM's
    score, each PRM's pick, and filters for the questions where the PRMs disagree or the pick is wrong."""
    runs: str = field(default="runs/bon", metadata={"help": "directory of the BoN runs (<runs>/<name>/)"})
    main: str = field(default="dreamprm", metadata={"help": "the main PRM's run (DreamPRM); needs its results.json"})
    vanilla: str = field(default="vanilla", metadata={
        "help": "the run shown beside it (the vanilla PRM); absent or 'none': the page shows the main run only"})
    benchmarks: str | None = field(default=None, metadata={
        "help": "comma-separated benchmarks (default: those of the main run's results.json)"})
    candidates: str = field(default="runs/rollouts/{benchmark}.jsonl", metadata={
        "help": "candidate file of each benchmark ({benchmark} is replaced): the file the runs scored"})
    image_side: int = field(default=384, metadata={"help": "images are shrunk to this longest side before embedding"})
    limit: int = field(default=0, metadata={
        "help": "at most this many questions per benchmark, in file order (0: all)"})

    def out_dir(self) -> Path:
        return self.resolve(self.out or f"{self.runs}/viewer")

    def candidates_path(self, benchmark: str) -> Path:
        return self.resolve(self.candidates.format(benchmark=benchmark))


# --- colours: red (0) .. yellow (0.5) .. green (1), ColorBrewer's RdYlGn ends ------------------------------

RED, YELLOW, GREEN = (215, 48, 39), (254, 224, 139), (26, 152, 80)


def colour(score: float) -> tuple[int, int, int]:
    a, b, t = (RED, YELLOW, score * 2) if score < 0.5 else (YELLOW, GREEN, score * 2 - 1)
    return tuple(round(x + (y - x) * t) for x, y in zip(a, b))


def tint(score: float, alpha: float = 0.35) -> tuple[int, int, int]:
    """The colour blended with white: a background dark text stays readable on."""
    return tuple(round(255 + (c - 255) * alpha) for c in colour(score))


def rgb(c) -> str:
    return f"rgb({c[0]},{c[1]},{c[2]})"


# --- reading the runs --------------------------------------------------------------------------------------

@dataclass
class Run:
    """One BoN run as the page needs it: per benchmark its step scores and its picks (id -> sample)."""
    name: str
    aggregation: str
    n: int  # the largest N it selected at: its picks are among the first n candidates
    results: dict
    benchmarks: list[str]
    scores: dict = field(default_factory=dict)  # bench -> id -> {sample: [step scores]}; bench absent: not scored
    picks: dict = field(default_factory=dict)  # bench -> id -> (sample, method); only PRM picks


def check_selected(r: dict) -> None:
    check_id(r)
    number(r, "sample", 0, None, integer=True)


def load_run(cfg: ViewConfig, name: str, benchmarks: list[str] | None, skips: list[Skips]) -> Run:
    """The run <runs>/<name>: its results.json (required), and per benchmark (default: its own) the scores and
    selection files it has; their bad records are counted in new entries of `skips`."""
    folder = cfg.resolve(cfg.runs) / name
    results = read_json(folder / "results.json", "BoN results file (BoN/pick.py writes it)")
    if results.get("unit") == "response":
        raise DataError(f"{folder}: an ORM run (one score per response); the viewer shows step scores")
    run = Run(name, str(results.get("aggregation", "mean_log_odds")), max(results.get("n") or [8]), results,
              benchmarks or list(results.get("benchmarks", {})))
    for bench in run.benchmarks:
        if (p := folder / f"{bench}.scores.jsonl").exists():
            skips.append(cfg.skips(p))
            run.scores[bench] = read_scores(p, skips[-1])[0]
        if (p := folder / f"{bench}.selected.jsonl").exists():
            skips.append(cfg.skips(p))
            run.picks[bench] = {r["id"]: (int(r["sample"]), str(r["method"]))
                                for r in read_records(p, ("id", "sample", "method"), check_selected, skips[-1])
                                if str(r["method"]).startswith("prm:")}  # not self-consistency (no scores)
    return run


def embed_image(path: Path, side: int) -> str:
    """A data: URI of the image shrunk to `side`: PNG or JPEG, whichever is smaller (drawings vs photos)."""
    im = load_image(path, side)
    encoded = []
    for fmt, mime, kw in (("PNG", "image/png", {"optimize": True}), ("JPEG", "image/jpeg", {"quality": 85})):
        buf = io.BytesIO()
        im.save(buf, fmt, **kw)
        encoded.append((len(buf.getvalue()), mime, buf.getvalue()))
    _, mime, data = min(encoded)
    return f"data:{mime};base64,{base64.b64encode(data).decode()}"


# --- one question as the page shows it ---------------------------------------------------------------------

@dataclass
class View:
    bench: str
    q: Question  # its candidates cut to the first N
    image: str | None  # data: URI
    image_problem: str | None
    steps: dict  # run name -> per candidate its step scores (None: not scored)
    aggregates: dict  # run name -> per candidate the aggregate of its step scores (None: no score)
    picks: dict  # run name -> (picked sample, method) or None
    disagree: bool
    wrong: bool

    @property
    def truth(self) -> str | None:
        return self.q.ground_truth


def flags(main_pick: int | None, vanilla_pick: int | None, right: dict) -> tuple[bool, bool]:
    """(the PRMs disagree, the main pick is wrong). Unknown (a run without a pick for the question) is neither:
    the filters show what is known to be so."""
    disagree = main_pick is not None and vanilla_pick is not None and main_pick != vanilla_pick
    return disagree, main_pick is not None and not right[main_pick]


def build(cfg: ViewConfig) -> tuple[list[Run], list[View], dict, list[str]]:
    """(the runs, the questions, per benchmark its counts, notes for the page) from the runs' files."""
    skips: list[Skips] = []
    main = load_run(cfg, cfg.main, [b.strip() for b in (cfg.benchmarks or "").split(",") if b.strip()], skips)
    benchmarks, runs, notes = main.benchmarks, [main], []
    if cfg.vanilla == cfg.main:
        raise DataError(f"--vanilla {cfg.vanilla!r} is the --main run; give another run or 'none'")
    van_dir = cfg.resolve(cfg.runs) / cfg.vanilla
    if cfg.vanilla.lower() != "none" and (van_dir / "results.json").is_file():
        runs.append(load_run(cfg, cfg.vanilla, benchmarks, skips))
    else:
        notes.append(f"No vanilla run ({van_dir if cfg.vanilla.lower() != 'none' else '--vanilla none'}): "
                     f"the page shows {cfg.main} only; the filter 'the PRMs disagree' is off.")
        print(notes[-1])
    n = main.n
    views, counts = [], {}
    image_skips = Skips("images")
    for bench in benchmarks:
        src = cfg.candidates_path(bench)
        if not src.is_file():
            print(f"{bench}: no candidate file {src}; left out")
            notes.append(f"{bench}: no candidate file {src}; left out.")
            continue
        skips.append(cfg.skips(src))
        questions, issues = load_candidates(src, cfg.resolve("."), skips[-1])
        strays = Counter()
        for run in runs:
            if bench not in run.scores:
                notes.append(f"{bench}: {run.name} has no scores (no shading, no pick).")
        c = counts[bench] = {"questions": 0, "disagree": 0, "wrong": 0, "picked": 0,
                             "accuracy": main.results.get("benchmarks", {}).get(bench, {}).get("accuracy", {})
                             .get(f"prm:{main.aggregation}", {}).get(str(n))}
        for q in list(questions.values())[:cfg.limit or None]:
            q.candidates = q.candidates[:n]
            right = {cand.sample: cand.true_false for cand in q.candidates}
            steps, aggs, picks = {}, {}, {}  # per run
            for run in runs:
                by_sample = run.scores.get(bench, {}).get(q.id)
                steps[run.name] = [None if by_sample is None else by_sample.get(cand.sample) for cand in q.candidates]
                aggs[run.name] = cot_scores([s or None for s in steps[run.name]], run.aggregation)
                pick = run.picks.get(bench, {}).get(q.id)
                if pick is not None and pick[0] not in right:  # a selection made on another candidate file?
                    strays[run.name] += 1
                    pick = None
                picks[run.name] = pick
            chosen = [p[0] if (p := picks[r.name]) else None for r in runs]
            disagree, wrong = flags(chosen[0], chosen[1] if len(runs) > 1 else None, right)
            image, problem = None, None
            if q.image is not None:
                image_skips.seen += 1
                if (bad := cfg.image_problem(q.image)) is None:
                    image = embed_image(q.image, cfg.image_side)
                else:
                    problem = str(bad)
                    image_skips.add(bad.kind, q.where, str(q.image))
            views.append(View(bench, q, image, problem, steps, aggs, picks, disagree, wrong))
            c["questions"] += 1
            c["disagree"] += disagree
            c["wrong"] += wrong
            c["picked"] += picks[main.name] is not None
        for name, k in strays.items():
            notes.append(f"{bench}: {k} picks of {name} are no sample among the first {n} candidates of {src} "
                         "(not shown: was the run selected on another candidate file?)")
        print(f"{bench}: {c['questions']} questions, {c['disagree']} where the PRMs disagree, {c['wrong']} with a "
              f"wrong {main.name} pick" + "".join(f"; {why}: {k}" for why, k in issues.items()))
    for sk in skips + [image_skips]:
        sk.report(cfg.max_skip_fraction if sk is not image_skips else None)  # prints its line when it skipped
        if sk.total:
            notes.append(sk.line())
    if not views:
        raise DataError(f"no question to show: no candidate file for any of {benchmarks} "
                        f"(looked for {cfg.candidates!r})")
    return runs, views, counts, notes


# --- HTML --------------------------------------------------------------------------------------------------

def esc(x) -> str:
    return html.escape(str(x), quote=True)


def chip(run: str, label: str, score: float | None, what: str) -> str:
    """A run's score as a coloured number; its tooltip says whose score of what."""
    if score is None:
        return f'<span class="chip none" title="{esc(run)}: no score">{esc(label)} –</span>'
    return (f'<span class="chip" style="background:{rgb(colour(score))}" '
            f'title="{esc(run)} {esc(what)}: {score:.4f}">{esc(label)} {score:.2f}</span>')


def candidate_html(v: View, i: int, runs: list[Run], labels: dict) -> str:
    cand, main = v.q.candidates[i], runs[0].name
    steps = find_steps(cand.response)
    picked = [r.name for r in runs if v.picks[r.name] and v.picks[r.name][0] == cand.sample]
    marks = "".join(f'<span class="pick p{k}">{esc(labels[r.name])} pick</span>'
                    for k, r in enumerate(runs) if r.name in picked)
    head = (f'<h4>sample {cand.sample} <span class="tf">{"✓ correct" if cand.true_false else "✗ wrong"}</span>'
            f'{marks}</h4><p class="agg">aggregate: '
            + " ".join(chip(r.name, labels[r.name], v.aggregates[r.name][i], f"aggregate ({r.aggregation})")
                       for r in runs) + "</p>")
    body, end = [], 0
    if not steps:
        body.append('<p class="nosteps">no steps: no PRM score</p>')
    elif cand.response[:steps[0].start].strip():
        body.append(f'<div class="pre">{esc(cand.response[:steps[0].start].strip())}</div>')
    for j, s in enumerate(steps):
        chips, shade = [], None
        for r in runs:
            sc = v.steps[r.name][i]
            x = sc[j] if sc and j < len(sc) else None
            chips.append(chip(r.name, labels[r.name], x, f"step {j + 1}"))
            if r.name == main and x is not None:
                shade = x
        style = f' style="background:{rgb(tint(shade))}"' if shade is not None else ""
        body.append(f'<div class="step"><div class="chips">{"".join(chips)}</div>'
                    f'<div class="txt"{style}>{esc(s.text.rstrip())}</div></div>')  # rstrip: display only
        end = s.end
    for r in runs:  # a scores file that does not fit the steps (another candidate file?) is shown, not hidden
        sc = v.steps[r.name][i]
        if sc and len(sc) != len(steps):
            body.append(f'<p class="warn">{esc(r.name)}: {len(sc)} step scores for {len(steps)} steps</p>')
    if cand.response[end:].strip():
        body.append(f'<div class="final">{esc(cand.response[end:].strip())}</div>')
    cls = "cand " + ("right" if cand.true_false else "wrong") + "".join(f" picked{k}" for k, r in enumerate(runs)
                                                                       if r.name in picked)
    return f'<article class="{cls}" data-sample="{cand.sample}">{head}{"".join(body)}</article>'


def question_html(v: View, runs: list[Run], labels: dict) -> str:
    img = (f'<img src="{v.image}" alt="the question\'s image">' if v.image else
           f'<p class="warn">image unavailable: {esc(v.image_problem)}</p>' if v.image_problem else "")
    picks = []
    for r in runs:
        p = v.picks[r.name]
        if p is None:
            picks.append(f"{esc(labels[r.name])}: no pick (no scores)")
        else:
            ok = next(c.true_false for c in v.q.candidates if c.sample == p[0])
            picks.append(f"{esc(labels[r.name])} picks sample {p[0]} ({'right' if ok else 'wrong'}, {esc(p[1])})")
    cands = "".join(candidate_html(v, i, runs, labels) for i in range(len(v.q.candidates)))
    return (f'<section class="q" id="{esc(v.bench)}-{esc(v.q.id)}" data-bench="{esc(v.bench)}" '
            f'data-disagree="{int(v.disagree)}" data-wrong="{int(v.wrong)}">'
            f'<h3>{esc(v.bench)} · {esc(v.q.id)}</h3><div class="qhead">{img}<div>'
            f'<p class="question">{esc(v.q.question)}</p>'
            f'<p>ground truth: <b>{esc(v.truth if v.truth is not None else "not in the candidate file")}</b></p>'
            f'<p>{" · ".join(picks)}</p></div></div><div class="cands">{cands}</div></section>')


STYLE = """
body{font:14px/1.4 system-ui,sans-serif;margin:0 16px;color:#222}
[hidden]{display:none!important}
header{position:sticky;top:0;background:#fff;border-bottom:1px solid #ccc;padding:6px 0;z-index:1}
h1{font-size:20px;margin:4px 0}
.legend{display:inline-block;width:160px;height:12px;vertical-align:middle;
 background:linear-gradient(to right,rgb(215,48,39),rgb(254,224,139),rgb(26,152,80))}
.note{color:#8a4b00;margin:2px 0}
table{border-collapse:collapse;margin:4px 0}td,th{border:1px solid #ccc;padding:2px 8px}
#filters label{margin-right:16px}
section.q{border-top:3px solid #888;margin-top:14px}
.qhead{display:flex;gap:14px;align-items:flex-start}.qhead img{max-width:384px;border:1px solid #ccc}
.question{white-space:pre-wrap;font-weight:600}
.cands{display:grid;grid-template-columns:repeat(auto-fill,minmax(290px,1fr));gap:8px;margin:8px 0}
.cand{border:2px solid #ddd;border-radius:6px;padding:4px 6px}
.cand.right{border-color:#1a9850}.cand.wrong{border-color:#e8b0ab}
.cand.picked0{box-shadow:0 0 0 3px #2c5fb8}.cand.picked1{outline:3px dashed #7a4fa0;outline-offset:3px}
h4{margin:2px 0}.tf{font-weight:400}.right .tf{color:#1a7840}.wrong .tf{color:#b02418}
.pick{font-size:12px;color:#fff;border-radius:3px;padding:0 5px;margin-left:6px}
.pick.p0{background:#2c5fb8}.pick.p1{background:#7a4fa0}
.agg{margin:2px 0}
.step{display:flex;gap:4px;margin:3px 0}.chips{display:flex;flex-direction:column;gap:2px}
.chip{display:inline-block;min-width:52px;font:12px monospace;padding:1px 3px;border-radius:3px}
.chip.none{background:#eee;color:#888}
.txt,.pre,.final{white-space:pre-wrap;word-break:break-word;flex:1;padding:1px 4px;border-radius:3px}
.final{font-weight:600}.pre{color:#666}
.warn,.nosteps{color:#b02418}
"""

# Filters: a question is shown when it has every checked flag (data-<flag>="1"). The checked filters are kept in
# the URL hash, so that a filtered view can be linked to and reopened.
SCRIPT = """
(function () {
  var boxes = Array.prototype.slice.call(document.querySelectorAll("#filters input[type=checkbox]"));
  var questions = document.querySelectorAll("section.q");
  function apply() {
    var on = boxes.filter(function (b) { return b.checked; }).map(function (b) { return b.value; });
    var shown = 0;
    for (var i = 0; i < questions.length; i++) {
      var q = questions[i];
      var show = on.every(function (f) { return q.dataset[f] === "1"; });
      q.hidden = !show;
      shown += show ? 1 : 0;
    }
    document.getElementById("shown").textContent = String(shown);
    var hash = on.length ? "#filter=" + on.join(",") : "";
    if (location.hash !== hash) history.replaceState(null, "", hash || location.pathname + location.search);
  }
  var m = /^#filter=([a-z,]*)$/.exec(location.hash);
  var wanted = m ? m[1].split(",") : [];
  boxes.forEach(function (b) {
    b.checked = !b.disabled && wanted.indexOf(b.value) >= 0;
    b.addEventListener("change", apply);
  });
  apply();
})();
"""


def render(runs: list[Run], views: list[View], counts: dict, notes: list[str]) -> str:
    main = runs[0]
    labels = {main.name: "D"} | ({runs[1].name: "V"} if len(runs) > 1 else {})  # short: two chips per step
    who = " · ".join(f"<b>{labels[r.name]}</b> = {esc(r.name)}" for r in runs)
    rows = "".join(f"<tr><td>{esc(b)}</td><td>{c['questions']}</td><td>{c['picked']}</td><td>{c['wrong']}</td>"
                   f"<td>{c['disagree'] if len(runs) > 1 else '–'}</td>"
                   f"<td>{'–' if c['accuracy'] is None else format(c['accuracy'], '.1f')}</td></tr>"
                   for b, c in counts.items())
    n_dis, n_wrong = sum(v.disagree for v in views), sum(v.wrong for v in views)
    off = "" if len(runs) > 1 else " disabled"
    script_hash = base64.b64encode(hashlib.sha256(SCRIPT.encode()).digest()).decode()
    csp = f"default-src 'none'; img-src data:; style-src 'unsafe-inline'; script-src 'sha256-{script_hash}'"
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{csp}">
<link rel="icon" href="data:,"><title>BoN viewer: {esc(" vs ".join(r.name for r in runs))}</title>
<style>{STYLE}</style></head><body>
<header><h1>Best-of-N: {esc(" vs ".join(r.name for r in runs))}</h1>
<p>{who}; pick = the run's own (BoN/pick.py, aggregation <b>{esc(main.aggregation)}</b>) among the first
N = {main.n} candidates; step score <span class="legend"></span> 0 (red) .. 1 (green), the number beside each
step, exact on hover; a step's text is shaded by {esc(main.name)}'s score.</p>
{"".join(f'<p class="note">{esc(x)}</p>' for x in notes)}
<table><tr><th>benchmark</th><th>questions</th><th>{esc(main.name)} picks</th><th>wrong picks</th>
<th>PRMs disagree</th><th>accuracy (results.json, %)</th></tr>{rows}</table>
<form id="filters"><label><input type="checkbox" value="disagree"{off}> the PRMs disagree ({n_dis})</label>
<label><input type="checkbox" value="wrong"> {esc(main.name)}'s pick is wrong ({n_wrong})</label>
<span><b id="shown">{len(views)}</b> of {len(views)} questions shown</span></form></header>
<main>{"".join(question_html(v, runs, labels) for v in views)}</main>
<script>{SCRIPT}</script></body></html>
"""


def write_viewer(cfg: ViewConfig) -> Path:
    """BoN/view.py: <out>/index.html, refused if it exists without --resume (like every BoN command)."""
    out = cfg.output(cfg.out_dir() / "index.html", " (the page is rebuilt from the runs' files)")
    runs, views, counts, notes = build(cfg)
    page = render(runs, views, counts, notes)
    atomic_write_text(out, page)
    print(f"wrote {out} ({len(views)} questions, {len(page) / 1e6:.1f} MB; "
          f"{' vs '.join(r.name for r in runs)})")
    return out
