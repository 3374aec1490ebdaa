"""Where a step prefix ends and where its score is read: one definition for every source and both formats.

The same response and step must get the same PRM score whether the prefix came from a train record (the
released format ends `add` at the step's text, MC/tree.py after "\\n\\n", a hand-written file maybe after
"\\n"), from a meta record (question and whole response in one `input`) or from a best-of-N candidate.
"""
import json

import pytest
import torch

from dreamprm.bon import candidate_samples, load_candidates
from dreamprm.mc import build_tree
from dreamprm.packing import TreeScorer
from dreamprm.prm import PRM, Sample, paper_text, scored_text, step_segments
from dreamprm.samples import load_meta, load_train
from dreamprm.steps import step_prefixes

QUESTION = "Question: How many red squares are in the image?\nOptions: (A) 2 (B) 3"
RESPONSE = ("Step 1: Restate the question.\n   - Count the red squares.\n\n"
            "Step 2: Gather evidence from the image.\n   - I see three red squares.\n\n"
            "Step 3: Identify any background knowledge needed.\n   - Counting needs no more.\n\n"
            "Step 4: Reason with the current evidence.\n   - Three squares, so B.\n\n"
            "Step 5: Summarize and conclude with all the information.\n   - The answer is B.\n\n"
            "Final answer: B")


def _jsonl(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def _train_records(ends: str, sids=(1, 2, 3, 4, 5)) -> list[dict]:
    """Train records of RESPONSE's nodes with every `add` ending in `ends` (released format: "")."""
    return [{"id": 7, "sid": k, "input": QUESTION, "add": p.rstrip() + ends, "image_path": "im.png",
             "dataset": "ai2d", "accuracy": 0.5} for k, p in enumerate(step_prefixes(RESPONSE), 1) if k in sids]


@pytest.fixture(scope="module")
def sources(tmp_path_factory, images):
    """{source name: (samples, which step each score belongs to)} for one response from every reader."""
    root = tmp_path_factory.mktemp("src")
    images[2].save(root / "im.png")
    out = {}
    for name, ends in (("train, released (no separator)", ""), ("train, '\\n'", "\n"),
                       ("train, ' \\n\\n' (hand-written)", " \n\n")):
        out[name] = _jsonl(root / f"{len(out)}.jsonl", _train_records(ends))
    policy = {"id": 7, "sample": 0, "response": RESPONSE, "input": QUESTION, "true_false": True,
              "ground_truth": "B", "image_path": "im.png", "dataset": "ai2d"}
    nodes, _ = build_tree([policy])  # what MC/tree.py writes: `add` up to the next header, "\n\n" included
    out["train, MC/tree.py"] = _jsonl(root / "tree.jsonl", nodes)
    out["train, nodes 1-3 only"] = _jsonl(root / "part.jsonl", _train_records("", sids=(1, 2, 3)))
    meta = _jsonl(root / "meta.jsonl", [{"id": 7, "true_false": True, "input": f"{QUESTION}\n\n{RESPONSE}",
                                         "image_path": "im.png"}])
    cands = _jsonl(root / "cands.jsonl", [policy])
    return root, out, meta, cands


def _all_samples(sources, fmt):
    root, train_files, meta, cands = sources
    got = {}
    for name, path in train_files.items():
        td = load_train(path, root, fmt)
        got[name] = td.samples
    got["meta record"] = load_meta(meta, root).samples
    (q,) = load_candidates(cands, root)[0].values()
    got["BoN candidate"] = candidate_samples(q)
    return got


@pytest.mark.parametrize("fmt", ["paper", "stepwise"])
def test_a_step_scores_the_same_from_every_source(tiny_models, sources, fmt):
    prm = PRM.from_pretrained(str(tiny_models["prm"]), "cpu", "fp32", fmt).eval()
    torch.manual_seed(0)
    torch.nn.init.normal_(prm.head.weight, std=0.05)  # spread the scores so that agreement means something
    tree = TreeScorer(prm)
    per_source = {}
    for name, samples in _all_samples(sources, fmt).items():
        with torch.no_grad():
            encoder = prm(prm.encoder(samples))
        packed = tree.score(samples)
        torch.testing.assert_close(encoder, packed, atol=1e-5, rtol=0)
        # which step each score belongs to: a sample's prefixes are its steps in order (paper: one per node)
        steps = [k for s in samples for k in range(len(s.prefixes))] if fmt == "stepwise" or len(samples) == 1 \
            else list(range(len(samples)))
        per_source[name] = dict(zip(steps, encoder.tolist()))
    ref = per_source["BoN candidate"]
    assert len(ref) == 5 and max(ref.values()) - min(ref.values()) > 1e-3
    for name, scores in per_source.items():
        for k, v in scores.items():
            assert v == pytest.approx(ref[k], abs=1e-5), (name, k + 1)


def test_stripped_prefixes_and_segments():
    s = Sample(None, "  Q?\n", ["\nStep 1: a.\n\n", "\nStep 1: a.\n\nStep 2: b.\n"])
    question, prefixes = scored_text(s)
    assert question == "Q?" and prefixes == ["Step 1: a.", "Step 1: a.\n\nStep 2: b."]
    assert step_segments(prefixes) == ["Step 1: a.", "\n\nStep 2: b."]
    assert scored_text(s, "raw") == (s.question, s.prefixes)
    with pytest.raises(ValueError, match="nested"):
        step_segments(["Step 1: a.", "Step 2: b."])


@pytest.mark.parametrize("fmt", ["paper", "stepwise"])
def test_a_prefix_reads_its_last_token_and_never_what_follows(tiny_models, fmt):
    """paper: each prefix is the chat template around question + blank line + the stripped prefix; stepwise: prefix
    k's tokens are prefix k-1's extended, ending at the step's last character, never at a separator."""
    prm = PRM.from_pretrained(str(tiny_models["prm"]), "cpu", "fp32", fmt)
    sample = Sample(None, QUESTION + "\n", [p + "\n\n" for p in step_prefixes(RESPONSE)])
    (seqs,) = prm.encoder.sequences([sample], [0])
    question, prefixes = scored_text(sample)
    tok, head = prm.processor.tokenizer, prm.encoder.header
    assert len(seqs) == 5
    for seq, prefix in zip(seqs, prefixes):
        want = head(paper_text(question, prefix), False, 0) if fmt == "paper" else head(question, False, 0) + prefix
        assert tok.decode(seq) == want
    if fmt == "stepwise":
        assert all(b[:len(a)] == a for a, b in zip(seqs, seqs[1:]))
