"""The judge: rules first, the LLM only for what they leave undecided, every decision counted."""
from dreamprm.judge import Judge, JudgeItem


def test_rules_decide_without_a_judge_model():
    j = Judge(None)
    out = j([JudgeItem("Q?", "B", "B", ["3", "7"]), JudgeItem("Q?", "(A) 3", "B", ["3", "7"]),
             JudgeItem("Q?", "7", "B", ["3", "7"]), JudgeItem("Q?", "3.0001", "3"), JudgeItem("Q?", None, "3")])
    assert out == [(True, "rule"), (False, "rule"), (True, "rule"), (True, "rule"), (False, "rule")]
    assert j.stats["rule_right"] == 3 and j.stats["rule_wrong"] == 2 and j.stats["judge_calls"] == 0


def test_undecided_counts_as_wrong_and_is_reported_without_a_judge():
    j = Judge("none")
    assert j([JudgeItem("Who?", "the red fox", "a fox")]) == [(False, "none")]
    assert j.stats["undecided_no_judge"] == 1
    assert "1 undecided by the rules counted wrong (no judge model configured)" in j.report()


def test_llm_judge_sees_only_undecided_items_batched_and_cached():
    calls = []

    def reply(texts):
        calls.append(list(texts))
        return ["Correct." if "the red fox" in t else "I cannot tell" for t in texts]

    j = Judge(reply_fn=reply)
    items = [JudgeItem("Who?", "the red fox", "a fox"), JudgeItem("Who?", "3", "3"),
             JudgeItem("Who?", "a dog", "a fox"), JudgeItem("Who?", "the red fox", "a fox")]
    assert j(items) == [(True, "judge"), (True, "rule"), (False, "none"), (True, "judge")]
    assert len(calls) == 1 and len(calls[0]) == 2  # one batch, duplicates asked once
    assert "Candidate answer: the red fox" in calls[0][0] and "Ground truth answer: a fox" in calls[0][0]
    j(items[:1])
    assert len(calls) == 1  # served from the cache
    s = j.stats
    assert (s["judge_calls"], s["judge_right"], s["judge_unparseable"], s["judge_cached"]) == (2, 3, 1, 2)
    assert "1 unparseable replies counted wrong" in j.report()


def test_tiny_judge_model_runs_and_its_replies_are_counted(tiny_models):
    j = Judge(str(tiny_models["judge"]), "cpu", "fp32", max_new_tokens=4)
    out = j([JudgeItem("Who?", "the red fox", "a fox"), JudgeItem("Who?", "a dog", "a fox")])
    assert all(isinstance(ok, bool) and by in ("judge", "none") for ok, by in out)
    s = j.stats
    assert s["judge_calls"] == 2 and s["judge_right"] + s["judge_wrong"] + s["judge_unparseable"] == 2
