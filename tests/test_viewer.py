"""The BoN viewer (dreamprm/viewer.py, BoN/view.py): flags, escaping and an absent vanilla run on hand-made runs,
then the page in a real headless Chromium: no console message, the candidates in the DOM after its script ran,
the filters read from the URL hash, and a screenshot showing the score colours."""
import json
import os
import re
import runpy
import shutil
import signal
import subprocess
import tempfile
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dreamprm import viewer
from dreamprm.bon import SelectConfig, select_benchmarks
from dreamprm.cli import parse_args
from dreamprm.miniworld.synthetic import write_bon_candidates
from dreamprm.viewer import ViewConfig, build, colour, flags, write_viewer

ROOT = Path(__file__).resolve().parents[1]
BENCHES = ("bench_a", "bench_b")
# 4 questions x 4 candidates, candidate c answers c, the truth is question % 4. The sample each run picks:
PICKS = {"dreamprm": [0, 0, 2, 1], "vanilla": [0, 1, 3, 1]}
DISAGREE, WRONG = {1, 2}, {1, 3}  # questions where the picks differ; where dreamprm's pick is not question % 4
HIGH, LOW = [0.95, 0.9, 0.95], [0.1, 0.3, 0.05]  # the picked candidate's step scores; every other one's
EVIL = '<script>alert("x")</script></section>'


def make_runs(root: Path, runs=("dreamprm", "vanilla")) -> Path:
    """Candidates (with images), hand-written step scores and BoN/pick.py's selection for each run."""
    for b in BENCHES:
        path = write_bon_candidates(root / "rollouts", n_questions=4, n_candidates=4, n_steps=3,
                                    image_size=(40, 60), dataset=b)
        recs = [json.loads(line) for line in path.read_text().splitlines()]
        for r in recs:  # untrusted text inside a step of one candidate and in a question
            if r["id"] == f"{b}-0":
                r["input"] = "<img src=x onerror=alert(1)> & 'what' \"is\" it?"
                if r["sample"] == 2:
                    r["response"] = r["response"].replace("Step 2: ", f"Step 2: {EVIL} ")
        path.write_text("".join(json.dumps(r) + "\n" for r in recs) + ("{not json\n" if b == "bench_b" else ""))
    for name in runs:
        out = root / "bon" / name
        out.mkdir(parents=True)
        for b in BENCHES:
            (out / f"{b}.scores.jsonl").write_text("".join(json.dumps({
                "id": f"{b}-{q}", "dataset": b, "prm": name, "format": "stepwise", "unit": "step",
                "candidates": [{"sample": c, "scores": HIGH if c == pick else LOW} for c in range(4)]}) + "\n"
                for q, pick in enumerate(PICKS[name])))
        select_benchmarks(SelectConfig(path=str(root), name=name, out=str(out), benchmarks=",".join(BENCHES),
                                       candidates="rollouts/{benchmark}.jsonl", n="1,4"))
    return root


def cfg(root: Path, *extra) -> ViewConfig:
    return parse_args(ViewConfig, ["--path", str(root), "--runs", "bon", "--candidates", "rollouts/{benchmark}.jsonl",
                                   *extra])


@pytest.fixture
def runs(tmp_path):
    return make_runs(tmp_path)


def sections(page: str) -> dict:
    """id -> the attributes of each question's <section> (hidden: True when the attribute is there)."""
    class P(HTMLParser):
        found = {}

        def handle_starttag(self, tag, attrs):
            a = dict(attrs)
            if tag == "section" and a.get("class") == "q":
                self.found[a["id"]] = a | {"hidden": "hidden" in a}
    p = P()
    p.found = {}
    p.feed(page)
    return p.found


# --- unit tests ----------------------------------------------------------------------------------------------

def test_flags_by_hand():
    right = {0: False, 1: True, 2: False}
    assert flags(0, 1, right) == (True, True)
    assert flags(1, 1, right) == (False, False)
    assert flags(1, None, right) == (False, False)  # no vanilla pick: not known to disagree
    assert flags(None, 2, right) == (False, False)  # no main pick: nothing to be wrong
    assert colour(0) == viewer.RED and colour(0.5) == viewer.YELLOW and colour(1) == viewer.GREEN


def test_picks_flags_and_data_attributes(runs, capsys):
    _, views, counts, _ = build(cfg(runs))
    got = {(v.bench, v.q.id): (v.disagree, v.wrong) for v in views}
    assert got == {(b, f"{b}-{q}"): (q in DISAGREE, q in WRONG) for b in BENCHES for q in range(4)}
    for v in views:  # the picks are BoN/pick.py's, read back from the selection files
        q = int(v.q.id.rsplit("-", 1)[1])
        assert {k: p[0] for k, p in v.picks.items()} == {k: PICKS[k][q] for k in PICKS}
        assert v.picks["dreamprm"][1] == "prm:mean_log_odds" and len(v.q.candidates) == 4
        assert v.truth == str(q % 4) and v.image.startswith("data:image/")
    assert counts["bench_a"] | {"accuracy": None} == {"questions": 4, "disagree": 2, "wrong": 2, "picked": 4,
                                                       "accuracy": None}
    assert counts["bench_a"]["accuracy"] == 50.0
    out = capsys.readouterr().out
    assert "bench_a: 4 questions, 2 where the PRMs disagree, 2 with a wrong dreamprm pick" in out
    page = (write_viewer(cfg(runs))).read_text()
    secs = sections(page)
    assert len(secs) == 8 and not any(s["hidden"] for s in secs.values())
    for b in BENCHES:
        for q in range(4):
            s = secs[f"{b}-{b}-{q}"]
            assert (s["data-disagree"], s["data-wrong"]) == (str(int(q in DISAGREE)), str(int(q in WRONG)))
    assert page.count('class="pick p0"') == 8 and page.count('class="pick p1"') == 8  # every question, both PRMs
    assert '<b id="shown">8</b> of 8' in page and "the PRMs disagree (4)" in page and "pick is wrong (4)" in page
    # each step's chip: its colour and its exact score on hover
    assert f'style="background:{viewer.rgb(colour(0.95))}" title="dreamprm step 1: 0.9500"' in page


def test_every_text_is_escaped(runs):
    page = write_viewer(cfg(runs)).read_text()
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&lt;/section&gt;" in page
    assert "&lt;img src=x onerror=alert(1)&gt; &amp; &#x27;what&#x27; &quot;is&quot; it?" in page
    assert page.count("<script") == 1 and "<img src=x" not in page and len(sections(page)) == 8
    # the policy runs the page's own script only: its hash is the one in the page
    script = re.search(r"<script>(.*)</script>", page, re.S).group(1)
    assert script == viewer.SCRIPT and "default-src 'none'" in page


@pytest.mark.parametrize("vanilla", ["absent", "none"])
def test_without_a_vanilla_run_the_page_shows_the_main_run(tmp_path, vanilla, capsys):
    root = make_runs(tmp_path, runs=("dreamprm",) if vanilla == "absent" else ("dreamprm", "vanilla"))
    page = write_viewer(cfg(root, *(["--vanilla", "none"] if vanilla == "none" else []))).read_text()
    assert "No vanilla run" in page and "the page shows dreamprm only" in page
    assert 'value="disagree" disabled' in page and 'title="vanilla' not in page
    secs = sections(page)
    assert len(secs) == 8 and all(s["data-disagree"] == "0" for s in secs.values())
    assert sum(s["data-wrong"] == "1" for s in secs.values()) == 4
    assert "dreamprm only" not in capsys.readouterr().err


def test_bad_records_missing_images_and_refusal_to_overwrite(runs, capsys):
    (runs / "rollouts" / "images" / "bench_a-3.png").unlink()
    (runs / "bon" / "vanilla" / "bench_a.scores.jsonl").write_text(
        "garbage\n" + (runs / "bon" / "vanilla" / "bench_a.scores.jsonl").read_text())
    page = write_viewer(cfg(runs, "--max_skip_fraction", "0.3")).read_text()
    out = capsys.readouterr().out
    for text in (out, page):
        assert "bench_b.jsonl: skipped 1 of 17 records: malformed JSON 1" in text
        assert "vanilla/bench_a.scores.jsonl: skipped 1 of 5 records" in text
        assert "images: skipped 1 of 8 records: missing image 1" in text
    assert "image unavailable: missing image" in page and len(sections(page)) == 8
    with pytest.raises(FileExistsError, match="--resume"):
        write_viewer(cfg(runs))
    write_viewer(cfg(runs, "--resume", "--limit", "1", "--max_skip_fraction", "0.3"))
    assert len(sections((runs / "bon" / "viewer" / "index.html").read_text())) == 2


def test_command_has_help_and_runs(runs, capsys):
    ns = runpy.run_path(str(ROOT / "BoN" / "view.py"), run_name="imported")
    assert ViewConfig in ns.values()
    with pytest.raises(SystemExit) as e:
        parse_args(ViewConfig, ["--help"])
    assert e.value.code == 0 and "--vanilla" in capsys.readouterr().out
    with pytest.raises(Exception, match="results.json"):
        write_viewer(cfg(runs, "--main", "nosuchrun", "--out", "elsewhere"))


# --- the page in a real headless browser ---------------------------------------------------------------------

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CONSOLE = re.compile(r"CONSOLE[:(]")  # how --enable-logging=stderr prints every console message of the page


def browse(page: Path, tmp: Path, fragment: str = "", screenshot: Path | None = None, timeout: float = 60):
    """Open `page` (file://) in headless Chromium: (the DOM after its scripts ran, its console messages).
    The page logs nothing itself, so every console message is an error or a warning worth failing on."""
    if CHROMIUM is None:
        pytest.skip("chromium is not installed (apt-get install chromium; .ci/run installs it as root)")
    profile = tempfile.mkdtemp(dir=tmp, prefix="profile-")
    args = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-extensions", "--no-first-run", f"--user-data-dir={profile}", "--enable-logging=stderr",
            "--v=0", "--hide-scrollbars", "--window-size=1280,2000"]
    args += [f"--screenshot={screenshot}"] if screenshot else []
    out, err = Path(profile) / "dom.html", Path(profile) / "stderr.txt"
    with out.open("w") as fo, err.open("w") as fe:  # files, not pipes: a stray child cannot block a read
        p = subprocess.Popen([*args, "--dump-dom", page.as_uri() + fragment], stdout=fo, stderr=fe,
                             stdin=subprocess.DEVNULL, start_new_session=True)
        try:
            p.wait(timeout)
        except subprocess.TimeoutExpired:
            pass
        finally:  # the browser's own process group, anything of it still alive
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            p.wait()
    log = err.read_text(errors="replace")
    if p.returncode != 0:
        pytest.fail(f"chromium exited with {p.returncode} (timeout {timeout} s?):\n{log[-2000:]}")
    return out.read_text(), [line for line in log.splitlines() if CONSOLE.search(line)]


def shown(dom: str) -> tuple[set, str]:
    secs = sections(dom)
    return {k for k, s in secs.items() if not s["hidden"]}, re.search(r'<b id="shown">(\d+)</b>', dom).group(1)


def test_page_in_headless_chromium(runs, tmp_path):
    page = write_viewer(cfg(runs))
    shot = tmp_path / "shot.png"
    dom, console = browse(page, tmp_path, "#filter=disagree", shot)
    assert console == []
    ids, count = shown(dom)
    assert ids == {f"{b}-{b}-{q}" for b in BENCHES for q in DISAGREE} and count == "4"
    assert len(sections(dom)) == 8 and dom.count('<article class="cand') == 32  # every candidate is in the DOM
    assert "&lt;script&gt;alert(" in dom and "<script>alert" not in dom  # shown as text, never run
    dom, console = browse(page, tmp_path, "#filter=disagree,wrong")
    assert console == [] and shown(dom) == ({f"{b}-{b}-1" for b in BENCHES}, "2")
    dom, console = browse(page, tmp_path)
    assert console == [] and shown(dom)[1] == "8"

    # the screenshot: not blank, and the candidates' score colours are on it
    px = np.asarray(Image.open(shot).convert("RGB")).reshape(-1, 3).astype(int)
    assert px.std() > 20 and len(np.unique(px @ [65536, 256, 1])) > 50

    def area(c):  # pixels of exactly that colour (give or take rounding)
        return int((np.abs(px - np.array(c)).max(axis=1) <= 2).sum())
    for score in (0.95, 0.1):  # a picked candidate's chip and tinted text; the others'
        assert area(colour(score)) > 500 and area(viewer.tint(score)) > 5000, score


def test_console_check_catches_a_broken_page(runs, tmp_path, monkeypatch):
    """The check above can fail: a script error in the page is a console message, and the filter never runs."""
    monkeypatch.setattr(viewer, "SCRIPT", viewer.SCRIPT.replace("apply();\n})", "noSuchFunction();\n  apply();\n})"))
    page = write_viewer(cfg(runs))
    dom, console = browse(page, tmp_path, "#filter=disagree")
    assert len(console) == 1 and "Uncaught ReferenceError: noSuchFunction is not defined" in console[0]
    assert shown(dom) == ({k for k in sections(dom)}, "8")  # nothing filtered


def test_absent_vanilla_page_in_headless_chromium(tmp_path):
    root = make_runs(tmp_path, runs=("dreamprm",))
    dom, console = browse(write_viewer(cfg(root)), tmp_path, "#filter=disagree,wrong")
    assert console == [] and shown(dom) == ({f"{b}-{b}-{q}" for b in BENCHES for q in WRONG}, "4")
