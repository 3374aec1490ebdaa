"""The CPU mini world (dreamprm/miniworld/world.py) and its SIMULATED policy backend (dreamprm/miniworld/simulated.py)."""
import json
import random
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from dreamprm.backends import BACKENDS, Request, make_backend, stable_seed
from dreamprm.data import RECORD_KEYS
from dreamprm.io import AppendWriter, DataError, load_image, read_records
from dreamprm.judge import Judge
from dreamprm.mc import MCSettings, build_tree, estimate, node_key
from dreamprm.rollout import RolloutArgs, run
from dreamprm.miniworld.simulated import ERROR_PRONE, SimulatedPolicy, values
from dreamprm.steps import find_steps, final_answer_text, step_prefixes
from dreamprm.miniworld.world import DOMAINS, HELD_OUT, MARKER_NOISE, STEP_SET_KEYS, build, main, step_set
from conftest import load_script

SIZES = dict(seed=3, n_train=20, n_meta=12, n_test=12, n_step=10)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("mini")
    info = build(root / "world", root=root, **SIZES)
    policy = json.loads((root / "world" / "policy.json").read_text())
    return root, root / "world", info, policy


@pytest.fixture(scope="module")
def sim(world):
    return make_backend("simulated", str(world[1] / "policy.json"))


def snapshot(d: Path) -> dict:
    return {p.relative_to(d).as_posix(): p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file()}


# --- the generator -----------------------------------------------------------------------------------

def test_records_validate_and_images_open(world):
    root, out, info, policy = world
    names = [d.name for d in DOMAINS] + [h.name for h in HELD_OUT]
    assert [r["name"] for r in info["domains"]] == names
    assert json.loads((out / "world.json").read_text()) == info
    ids = []
    for row in info["domains"]:
        records = read_records(out / row["file"], required=RECORD_KEYS)
        assert len(records) == row["questions"] == SIZES[f"n_{row['role']}"]
        for r in records:
            assert r["dataset"] == row["name"] and r["hint"] and r["options"] is None
            assert int(r["ground_truth"]) >= 0 and not Path(r["image_path"]).is_absolute()
            im = load_image(root / r["image_path"])
            assert 96 <= max(im.size) <= 160
            q = policy["questions"][r["id"]]
            assert q["dataset"] == row["name"] and q["wrong"] == q["truth"] + q["offset"] != q["truth"]
        ids += [r["id"] for r in records]
    assert len(ids) == len(set(ids)) == len(policy["questions"])
    train = read_records(out / "data" / "train.jsonl", required=RECORD_KEYS)
    assert [r["id"] for r in train] == [i for i in ids if i.split("-")[0] in {d.name for d in DOMAINS}]
    for row in info["domains"]:  # every domain's questions follow its mix of kinds (and so error types)
        kinds = Counter(policy["questions"][r["id"]]["kind"] for r in read_records(out / row["file"]))
        assert dict(kinds) == {k: c for k, c in row["mix"].items() if c}
        if row["role"] != "train" or row["name"] != "wordproblem":  # the text-only domain keeps to its kind
            assert set(kinds) == {d.name for d in DOMAINS}
        if row["role"] == "train":
            assert kinds[row["name"]] == max(kinds.values()) >= row["questions"] // 2


@pytest.mark.parametrize("n", [20, 60])
def test_corruption_rates_realised_exactly(world, tmp_path, n):
    root, out, info, policy = world
    if n != SIZES["n_train"]:
        out = tmp_path / "w"
        info = build(out, seed=1, n_train=n, n_meta=6, n_test=6, n_step=6, root=tmp_path)
        policy = json.loads((out / "policy.json").read_text())
    expected = {"counting": 0, "bars": 0, "wordproblem": 0, "arithmetic": round(0.30 * n),
                "geometry": round(0.40 * n), "clocks": round(0.65 * n), "meta": 0, "bench_a": 0, "bench_b": 0,
                "stepbench": 0}
    for row in info["domains"]:
        bad = [r for r in read_records(out / row["file"])
               if r["ground_truth"] != str(policy["questions"][r["id"]]["truth"])]
        assert len(bad) == row["corrupted"] == expected[row["name"]], row["name"]
        assert row["quality"] == pytest.approx(1 - row["corruption_rate"])
        for r in bad:  # systematic: the ground truth is the answer of the domain's typical error
            q = policy["questions"][r["id"]]
            assert r["ground_truth"] == str(q["wrong"]) and q["corrupted"]
    assert n != 60 or [row["corrupted"] for row in info["domains"][3:6]] == [18, 24, 39]


def test_rerun_is_byte_identical_and_seeded(world, tmp_path):
    root, out, info, _ = world
    before = snapshot(out)
    assert build(out, root=root, **SIZES) == info
    assert snapshot(out) == before
    other = build(tmp_path / "w", root=tmp_path, **{**SIZES, "seed": 4})
    assert other != info and (tmp_path / "w" / "policy.json").read_bytes() != (out / "policy.json").read_bytes()
    build(tmp_path / "w", root=tmp_path, **{**SIZES, "seed": 4, "n_train": 5})  # smaller rerun: no stale images
    assert len(list((tmp_path / "w" / "data" / "images" / "counting").iterdir())) == 5


def test_cli(tmp_path, capsys):
    main(["--path", str(tmp_path), "--out", "runs/w", "--seed", "2", "--n_train", "4", "--n_meta", "6",
          "--n_test", "6", "--gpu", "cpu"])
    assert "SIMULATED" in capsys.readouterr().out
    rec = read_records(tmp_path / "runs" / "w" / "data" / "clocks.jsonl")[0]
    assert rec["image_path"].startswith("runs/w/data/images/clocks/") and (tmp_path / rec["image_path"]).is_file()


# --- the SIMULATED policy ---------------------------------------------------------------------------

def track(policy_q: dict, response: str) -> list[bool]:
    """Per step 2-4: does it state the wrong track's values?"""
    steps = {s.number: s for s in find_steps(response)}
    out = []
    for k, right, wrong in zip(ERROR_PRONE, policy_q["claims"]["right"], policy_q["claims"]["wrong"]):
        got = values(steps[k].text.split("\n", 1)[1])
        assert got in (values(right), values(wrong))
        out.append(got == values(wrong))
    return out


def marked(policy: dict, policy_q: dict, step_text: str) -> bool:
    return any(p.lower() in step_text.lower() for p in policy["kinds"][policy_q["kind"]]["error_phrases"])


def rollouts(sim, qid, seeds, temperature=1.0):
    return [o[0] for o in sim.generate([Request("prompt", None, {"id": qid}, seed=s) for s in seeds], 1,
                                       temperature, 1024)]


def test_registered_and_loads(world, sim, tmp_path):
    assert "simulated" in BACKENDS and isinstance(sim, SimulatedPolicy)
    assert isinstance(make_backend("simulated", str(world[1]), batch_size=4), SimulatedPolicy)  # a directory works
    with pytest.raises(DataError, match="SIMULATED policy"):
        make_backend("simulated", str(tmp_path / "missing.json"))
    (tmp_path / "x.json").write_text("{}")
    with pytest.raises(DataError, match="not a SIMULATED policy"):
        make_backend("simulated", str(tmp_path / "x.json"))
    with pytest.raises(KeyError, match="knows no question"):
        rollouts(sim, "nope-0001", [0])


def test_full_chains_have_five_steps_and_a_consistent_answer(world, sim):
    _, _, _, policy = world
    for qid, q in policy["questions"].items():
        for text in rollouts(sim, qid, range(8)):
            assert [s.number for s in find_steps(text)] == [1, 2, 3, 4, 5]
            assert len(step_prefixes(text)) == 5
            answer = final_answer_text(text)
            assert answer == str(q["wrong"] if any(track(q, text)) else q["truth"])
            assert sim.read_prefix(qid, text) == (5, answer == str(q["wrong"]))


def first_of(policy: dict, kind: str, skip: int = 0) -> str:
    """The id of a train question of this kind in its own domain (domains also hold other kinds)."""
    return [i for i, q in policy["questions"].items() if q["kind"] == q["dataset"] == kind][skip]


@pytest.mark.parametrize("kind", ["bars", "clocks"])
def test_step_error_and_marker_rates(world, sim, kind):
    _, _, _, policy = world
    qid = first_of(policy, kind)
    q = policy["questions"][qid]
    p, n = q["step_error_rate"], 6000
    errs, trials = Counter(), Counter()
    marks = Counter()  # (step erred itself, error phrase shown)
    for text in rollouts(sim, qid, range(n)):
        wrong = track(q, text)
        steps = {s.number: s.text for s in find_steps(text)}
        before = False
        for i, k in enumerate(ERROR_PRONE):
            if not before:  # on the right track so far: this step errs with probability p
                trials[k] += 1
                errs[k] += wrong[i]
                marks[wrong[i], marked(policy, q, steps[k])] += 1
            before = before or wrong[i]
    for k in ERROR_PRONE:
        se = (p * (1 - p) / trials[k]) ** 0.5
        assert abs(errs[k] / trials[k] - p) < 4 * se + 0.005, (k, errs[k] / trials[k], p)
    first_err = marks[True, True] / (marks[True, True] + marks[True, False])
    right = marks[False, True] / (marks[False, True] + marks[False, False])
    assert abs(first_err - (1 - MARKER_NOISE)) < 0.03 and abs(right - MARKER_NOISE) < 0.02
    right_answers = sum(final_answer_text(t) == str(q["truth"]) for t in rollouts(sim, qid, range(n, n + 4000)))
    assert abs(right_answers / 4000 - (1 - p) ** 3) < 0.03


def test_completions_follow_the_prefix(world, sim):
    _, _, _, policy = world
    for kind in ("counting", "clocks"):
        qid = first_of(policy, kind, 1)
        q = policy["questions"][qid]
        p = q["step_error_rate"]
        chains = rollouts(sim, qid, range(60))
        clean = [t for t in chains if not any(track(q, t))]
        dirty = [t for t in chains if any(track(q, t))]
        assert clean and dirty
        for text in dirty[:6]:  # an error anywhere in the prefix: every completion ends wrong
            first = ERROR_PRONE[track(q, text).index(True)]
            for k in range(first, 6):
                prefix = step_prefixes(text)[k - 1]
                assert sim.read_prefix(qid, prefix) == (k, True)
                outs = sim.generate([Request("c", None, {"id": qid}, prefix=prefix, seed=s) for s in range(20)],
                                    1, 1.0, 64)
                for (o,) in outs:
                    assert final_answer_text(prefix + o) == str(q["wrong"])
                    assert [s.number for s in find_steps(prefix + o)] == [1, 2, 3, 4, 5]
                    assert not find_steps(o) or find_steps(o)[0].number == k + 1
        for k in range(1, 6):  # a clean prefix ends right with probability (1 - p) ** (error-prone steps left)
            prefix = step_prefixes(clean[0])[k - 1]
            assert sim.read_prefix(qid, prefix) == (k, False)
            outs = sim.generate([Request("c", None, {"id": qid}, prefix=prefix, seed=s) for s in range(2000)],
                                1, 1.0, 64)
            rate = np.mean([final_answer_text(prefix + o) == str(q["truth"]) for (o,) in outs])
            want = (1 - p) ** max(0, 4 - k)
            assert abs(rate - want) < 4 * (want * (1 - want) / 2000) ** 0.5 + 0.005, (kind, k, rate, want)


def test_deterministic_per_seed_whatever_the_batch(world, sim):
    _, _, _, policy = world
    qids = list(policy["questions"])[:40]
    chain = rollouts(sim, qids[0], [7])[0]
    reqs = [Request("p", None, {"id": qid}, seed=stable_seed(qid, s)) for qid in qids for s in range(3)]
    reqs += [Request("c", None, {"id": qids[0]}, prefix=step_prefixes(chain)[k], seed=k) for k in range(5)]
    base = {(r.question["id"], r.prefix, r.seed): o for r, o in zip(reqs, sim.generate(reqs, 2, 1.0, 64))}
    random.Random(0).shuffle(reqs)
    again = {(r.question["id"], r.prefix, r.seed): o for r, o in zip(reqs, sim.generate(reqs, 2, 1.0, 64))}
    assert again == base
    assert [sim.generate([r], 2, 1.0, 64)[0] for r in reqs[:10]] == [base[(r.question["id"], r.prefix, r.seed)]
                                                                        for r in reqs[:10]]
    assert len({o[0] for o in base.values()}) > len(base) // 2  # seeds matter


def test_temperature(world, sim):
    _, _, _, policy = world
    for qid, q in list(policy["questions"].items())[::7]:
        greedy = rollouts(sim, qid, range(5), temperature=0)
        assert len(set(greedy)) == 1 and final_answer_text(greedy[0]) == str(q["truth"])
        assert not any(track(q, greedy[0])) and not marked(policy, q, greedy[0])
    q = policy["questions"]["clocks-0002"]
    half = rollouts(sim, "clocks-0002", range(4000), temperature=0.5)
    rate = np.mean([track(q, t)[0] for t in half])  # step 2 errs with p x temperature
    assert abs(rate - 0.5 * q["step_error_rate"]) < 0.025


def test_fast(world, sim):
    import time

    reqs = [Request("p", None, {"id": qid}, seed=i) for i, qid in enumerate(list(world[3]["questions"]) * 5)]
    t = time.perf_counter()
    sim.generate(reqs, 1, 1.0, 1024)
    assert len(reqs) / (time.perf_counter() - t) > 1000


# --- end to end through the real stage code --------------------------------------------------------

def test_rollouts_and_mc_labels_on_the_world(world, sim, tmp_path):
    root, out, _, policy = world
    mmpr = load_script("inference/mmpr.py")
    judge = Judge("none")  # integers: the rules decide every answer
    cfg = RolloutArgs(path=str(root), dataset="train", questions=str(out / "data" / "train.jsonl"),
                      out=str(tmp_path / "rollouts.jsonl"), n=2, judge="none", seed=5)
    summary = run(cfg, mmpr.make_prompt, mmpr.make_input, keep=lambda q: q["dataset"] in ("counting", "clocks"),
                  backend=sim, judge=judge)
    assert summary["records"] == 2 * 2 * SIZES["n_train"]
    responses = read_records(tmp_path / "rollouts.jsonl")
    assert all(r["answer"] in (str(policy["questions"][r["id"]]["truth"]), str(policy["questions"][r["id"]]["wrong"]))
               for r in responses)

    nodes, skipped = build_tree(responses, image_problem=cfg.image_problem)
    assert not skipped and len(nodes) == 5 * len(responses)
    with AppendWriter(tmp_path / "mc.jsonl", key=node_key, resume=False) as writer:
        stats = estimate(nodes, sim, judge, writer, MCSettings(min_rollouts=4, max_rollouts=8, seed=5),
                         resolve_image=cfg.resolve, progress=False)
    assert judge.stats["undecided_no_judge"] == judge.stats["judge_calls"] == 0 and stats["completions"] > 0
    labelled = read_records(tmp_path / "mc.jsonl")
    assert len(labelled) == len(nodes)

    groups = Counter()
    for n in labelled:
        q = policy["questions"][n["id"]]
        erred = sim.read_prefix(n["id"], n["add"])[1]
        assert n["times"] >= 4
        if erred:  # clean truth: an error in the prefix never recovers; corrupted truth: it always "succeeds"
            assert n["accuracy"] == (1.0 if q["corrupted"] else 0.0), n
        elif n["sid"] >= 4:  # nothing left to go wrong
            assert n["accuracy"] == (0.0 if q["corrupted"] else 1.0), n
        groups[n["dataset"], q["corrupted"], erred] += 1
    assert groups["counting", False, True] and groups["clocks", True, True] and groups["clocks", False, True]
    assert not any(c for (d, corrupted, _), c in groups.items() if d == "counting" and corrupted)


# --- the step-level test set (issue 13) ---------------------------------------------------------------

@pytest.fixture(scope="module")
def step_run(world, sim, tmp_path_factory):
    """The SIMULATED policy's responses to the step benchmark (3 per question) and the step set made of them."""
    root, out, _, _ = world
    tmp = tmp_path_factory.mktemp("steps")
    script = load_script("inference/world.py")
    cfg = RolloutArgs(path=str(root), dataset="stepbench", questions=str(out / "data" / "stepbench.jsonl"),
                      out=str(tmp / "stepbench.responses.jsonl"), n=3, judge="none", seed=5)
    run(cfg, script.make_prompt, script.make_input, backend=sim, judge=Judge("none"))
    steps = tmp / "stepbench.jsonl"
    items = main(["steps", "--path", str(root), "--policy", "world/policy.json", "--responses", cfg.out,
                  "--out", str(steps)])
    return read_records(cfg.out), steps, items


def test_step_set_schema(world, step_run):
    _, _, _, policy = world
    responses, path, items = step_run
    records = read_records(path)
    assert records == items and len(records) == len(responses) == 3 * SIZES["n_step"]
    for r in records:
        assert tuple(r) == STEP_SET_KEYS  # the contract's shape, the one data/visualprocessbench.jsonl has
        assert isinstance(r["id"], str) and isinstance(r["input"], str) and r["input"]
        assert r["dataset"] == "stepbench" and r["policy_model"] == "simulated"
        assert isinstance(r["ground_truth"], str) and Path(r["image_path"]).is_file() is False  # relative to --path
        assert (world[0] / r["image_path"]).is_file()
        assert all(isinstance(s, str) for s in r["steps"]) and len(r["steps"]) == len(r["labels"]) == 5
        assert set(r["labels"]) <= {1, -1}  # the world's values decide every step: nothing is neutral
        # the steps keep their "Step k:" headers, so joined they are the steps dreamprm.steps finds
        assert [s.text.rstrip() for s in find_steps("\n\n".join(r["steps"]))] == r["steps"]
        qid = r["id"].rsplit(":", 1)[0]
        assert policy["questions"][qid]["dataset"] == "stepbench"  # held out: no train or meta question
        assert r["ground_truth"] == str(policy["questions"][qid]["truth"])  # clean
    assert len({r["id"] for r in records}) == len(records)
    summary = json.loads((path.parent / (path.name + ".done")).read_text())
    assert summary["records"] == len(records)
    assert summary["steps"]["correct"] + summary["steps"]["incorrect"] == 5 * len(records)
    assert 0 < summary["fully_correct"] < len(records)  # both kinds of solution


def test_step_labels_are_the_policy_track(world, sim, step_run):
    _, _, _, policy = world
    responses, _, items = step_run
    by_id = {f"{r['id']}:{r['sample']}": r["response"] for r in responses}
    first_errors = Counter()
    for it in items:
        qid, response = it["id"].rsplit(":", 1)[0], by_id[it["id"]]
        q = policy["questions"][qid]
        wrong = track(q, response)  # steps 2-4: the wrong track's values (the test's own reading)
        assert it["labels"][0] == 1 and it["labels"][1:4] == [-1 if w else 1 for w in wrong]
        assert (it["labels"][4] == -1) == (final_answer_text(response) == str(q["wrong"]))
        for k, (step, lab) in enumerate(zip(it["steps"], it["labels"])):
            assert (lab == -1) == sim.read_prefix(qid, step)[1]  # -1: the policy reads the step as wrong
            # no recovery in this world: the first error and every step after it are -1
            assert (lab == -1) == sim.read_prefix(qid, step_prefixes(response)[k])[1]
        first_errors[it["labels"].index(-1) + 1 if -1 in it["labels"] else None] += 1
    assert set(first_errors) <= {None, 2, 3, 4} and first_errors[None] and len(first_errors) >= 3


def test_step_set_bad_input(world, sim, step_run, tmp_path):
    root = world[0]
    responses = step_run[0][:4]
    bad = [dict(responses[0], response="no steps here\nFinal answer: 3"), *responses[1:]]
    items, skipped = step_set(bad, sim)
    assert len(items) == 3 and skipped == Counter({"no steps": 1})
    with pytest.raises(DataError, match="knows no question"):
        step_set([dict(responses[0], id="nope-0001")], sim)
    src = tmp_path / "r.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in responses))
    args = ["steps", "--path", str(root), "--policy", "world/policy.json", "--responses", str(src),
            "--out", str(tmp_path / "s.jsonl")]
    main(args)
    with pytest.raises(FileExistsError, match="--resume"):
        main(args)
    assert len(main(args + ["--resume"])) == 4


def test_step_set_reads_like_visualprocessbench(world, step_run):
    stepeval = pytest.importorskip("dreamprm.stepeval")
    root = world[0]
    _, path, items = step_run
    got = stepeval.read_step_set(path, root, None, None)
    assert [(x.id, x.dataset, x.steps, x.labels) for x in got] == [
        (r["id"], r["dataset"], r["steps"], r["labels"]) for r in items]
    assert all(x.image == root / r["image_path"] for x, r in zip(got, items))


def test_report_macro_f1_is_step_f1():
    """The results page resamples per-solution confusion counts (fast); their macro-F1 is stepeval's definition."""
    stepeval = pytest.importorskip("dreamprm.stepeval")
    from dreamprm.miniworld.report import confusion, macro_f1, random_macro_f1

    rng = np.random.default_rng(0)
    for _ in range(20):
        n = int(rng.integers(1, 30))
        labels = [list(rng.choice([1, 1, 0, -1], size=int(rng.integers(1, 7)))) for _ in range(n)]
        scores = [list(np.round(rng.random(len(y)), 1)) for y in labels]  # ties at the threshold included
        for t in (0.3, 0.5):
            want = stepeval.step_f1(scores, labels, t)["macro_f1"]
            got = macro_f1(confusion(scores, labels, t).sum(0))
            assert (want is None and np.isnan(got)) or got == pytest.approx(want)
    assert random_macro_f1(500, 500) == pytest.approx(50)
    labels = [[1] * 65 + [-1] * 35] * 200  # a uniform scorer's mean macro-F1 is the formula's, to first order
    sims = [stepeval.step_f1([list(r) for r in rng.random((200, 100))], labels)["macro_f1"] for _ in range(5)]
    assert np.mean(sims) == pytest.approx(random_macro_f1(65, 35), abs=0.3)
