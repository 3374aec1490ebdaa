"""The generative PRM kind (`dreamprm/generative.py`) on tiny Qwen2-VL and InternVL checkpoints."""
import pytest
import torch

from dreamprm.generative import LABELS, GenerativeEncoder, GenerativePRM, conversation

STEPS = ["Step 1: Read the chart: the bar for May is 7.", "Step 2: Add 3 + 4 = 7.", "Final answer: B"]


@pytest.fixture(scope="module", params=["prm", "policy"])  # Qwen2-VL, InternVL
def prm(request, tiny_models):
    return GenerativePRM.from_pretrained(str(tiny_models[request.param]), device="cpu", precision="fp32")


def test_the_conversation_puts_image_question_and_step_one_in_the_first_user_turn():
    msgs = conversation("What is 3 + 4?", STEPS, has_image=True, labels=["+", "+", "-"])
    assert [m["role"] for m in msgs] == ["system", "user", "assistant"] * 1 + ["user", "assistant"] * 2
    assert msgs[1]["content"][0] == {"type": "image"}
    assert msgs[1]["content"][1]["text"] == f"What is 3 + 4?\n\nSolution:\n{STEPS[0]}"
    assert [m["content"][0]["text"] for m in msgs if m["role"] == "assistant"] == ["+", "+", "-"]
    with pytest.raises(ValueError, match="without steps"):
        conversation("Q", [], has_image=False)


@pytest.mark.parametrize("with_image", [True, False])
def test_one_pass_scores_equal_one_pass_per_step_prefix(prm, images, with_image):
    image = images[1] if with_image else None
    enc = prm.encoder.encode(image, "What is 3 + 4?", STEPS)
    assert len(enc.reads) == len(STEPS)
    with torch.no_grad():
        one = prm.step_scores([enc])
        per = torch.cat([prm.step_scores([prm.encoder.encode(image, "What is 3 + 4?", STEPS[:k])])[-1:]
                         for k in range(1, len(STEPS) + 1)])
    assert torch.allclose(one, per, atol=1e-4), (one, per)
    assert ((one > 0) & (one < 1)).all()


def test_each_read_position_is_just_before_a_label_token(prm):
    enc = prm.encoder.encode(None, "Q?", STEPS)
    plus = prm.encoder.label_ids[0]
    assert [enc.ids[r + 1] for r in enc.reads[:-1]] == [plus] * (len(STEPS) - 1)
    plus, minus = prm.encoder.label_ids
    taught = prm.encoder.encode(None, "Q?", STEPS, [False, True, True])  # true verdicts in the context
    assert [taught.ids[r + 1] for r in taught.reads[:-1]] == [minus, plus] and taught.reads == enc.reads
    header = prm.processor.tokenizer.decode(enc.ids[:enc.reads[0] + 1])
    assert header.endswith("assistant\n") and STEPS[0] in header


def test_a_padded_batch_scores_like_each_response_alone(prm, images):
    a = prm.encoder.encode(images[0], "Short?", STEPS[:1])
    b = prm.encoder.encode(images[2], "A longer question about the chart?", STEPS)
    with torch.no_grad():
        both = prm.step_scores([a, b])
        alone = torch.cat([prm.step_scores([a]), prm.step_scores([b])])
    assert torch.allclose(both, alone, atol=1e-4)


def test_lower_loss_training_moves_the_scores_towards_the_labels(tiny_models):
    prm = GenerativePRM.from_pretrained(str(tiny_models["prm"]), device="cpu", precision="fp32")
    labels = [[True, True, False]]
    enc = [prm.encoder.encode(None, "What is 3 + 4?", STEPS, labels[0])]
    opt = torch.optim.Adam(prm.parameters(), lr=1e-2)
    before = prm.step_scores(enc).detach()
    for _ in range(20):
        opt.zero_grad()
        loss = prm.lm_loss(enc, labels).mean()
        loss.backward()
        opt.step()
    after = prm.step_scores(enc).detach()
    assert (after[:2] > before[:2]).all() and after[2] < before[2], (before, after)


def test_a_tokenizer_without_single_label_tokens_is_refused(tiny_models):
    from transformers import AutoProcessor

    proc = AutoProcessor.from_pretrained(str(tiny_models["prm"]))
    proc.tokenizer.convert_tokens_to_ids = lambda t: proc.tokenizer.unk_token_id
    with pytest.raises(ValueError, match="no single token"):
        GenerativeEncoder(proc)
    assert LABELS == ("+", "-")


def test_chain_aggregations_and_the_two_upper_loss_targets():
    from dreamprm.generative import chain_scores, upper_loss

    p = torch.tensor([0.9, 0.5, 0.2, 0.8])
    assert chain_scores(p, [3, 1], "mean").tolist() == pytest.approx([1.6 / 3, 0.8])
    assert chain_scores(p, [3, 1], "max").tolist() == pytest.approx([0.9, 0.8])
    assert chain_scores(p, [3, 1], "min").tolist() == pytest.approx([0.2, 0.8])
    assert chain_scores(p, [3, 1], "log_mean").tolist() == pytest.approx([(0.9 * 0.5 * 0.2) ** (1 / 3), 0.8])
    with pytest.raises(ValueError, match="aggregation must be one of"):
        chain_scores(p, [4], "median")
    # logits giving P(+) = p: log(p / (1 - p)) against 0
    logits = torch.stack([torch.log(p / (1 - p)), torch.zeros(4)], dim=1)
    correct = torch.tensor([1.0, 0.0])
    plus = upper_loss(logits, [3, 1], correct, "mean", "plus")
    assert plus.item() == pytest.approx(((1.6 / 3 - 1) ** 2 + 0.8 ** 2) / 2, rel=1e-5)
    both = upper_loss(logits, [3, 1], correct, "mean", "both")  # the wrong chain is scored on P(-) = 0.2
    assert both.item() == pytest.approx(((1.6 / 3 - 1) ** 2 + (0.2 - 1) ** 2) / 2, rel=1e-5)
    with pytest.raises(ValueError, match="loss target"):
        upper_loss(logits, [3, 1], correct, "mean", "+")
