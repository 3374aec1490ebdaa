"""The model layer on tiny random checkpoints, loaded through the same from_pretrained path as the real ones."""
import pytest
import torch

from dreamprm import prompts
from dreamprm.models import generate, load_judge, load_vlm, pick_dtype
from dreamprm.prm import HEAD_FILE, PRM, Sample


def test_tiny_policy_generates_for_a_batch_of_image_prompts(tiny_models, images):
    model, proc = load_vlm(str(tiny_models["policy"]), "cpu")
    assert proc.tokenizer.padding_side == "left"
    batch = [(im, prompts.structured_prompt(f"Question {i}?")) for i, im in enumerate(images)]
    out = generate(model, proc, batch, n=2, max_new_tokens=12, batch_size=4, progress=False)
    assert len(out) == 4 and all(len(o) == 2 and all(isinstance(t, str) for t in o) for o in out)


def test_greedy_generation_does_not_depend_on_batching(tiny_models, images):
    model, proc = load_vlm(str(tiny_models["policy"]), "cpu")
    batch = [(im, f"Describe image {i}.") for i, im in enumerate(images[:3])]
    together = generate(model, proc, batch, temperature=0, max_new_tokens=8, batch_size=3, progress=False)
    alone = generate(model, proc, batch, temperature=0, max_new_tokens=8, batch_size=1, progress=False)
    assert together == alone


def test_tiny_judge_generates_from_text(tiny_models):
    model, tok = load_judge(str(tiny_models["judge"]), "cpu")
    out = generate(model, tok, [(None, prompts.judge_prompt("Q?", "B", "B"))] * 2, n=1, max_new_tokens=4,
                   temperature=0, progress=False)
    assert len(out) == 2 and out[0] == out[1]


def test_tiny_prm_scores_a_batch_and_backpropagates(tiny_models, images):
    prm = PRM.from_pretrained(str(tiny_models["prm"]), "cpu")
    items = [Sample(im, "What is shown?", [f"Step 1: look at part {i}."]) for i, im in enumerate(images)]
    scores = prm.score(items)
    assert scores.shape == (4,) and bool(((scores > 0) & (scores < 1)).all())
    torch.nn.functional.mse_loss(scores, torch.tensor([1.0, 0.0, 1.0, 0.0])).backward()
    assert prm.head.weight.grad.norm() > 0
    assert any(p.grad is not None and p.grad.norm() > 0 for p in prm.backbone.parameters())
    # Left padding: an item scores the same alone as inside a padded batch.
    with torch.no_grad():
        alone = torch.stack([prm.score([it])[0] for it in items])
    torch.testing.assert_close(alone, scores.detach(), atol=1e-5, rtol=1e-4)


def test_prm_round_trips_through_save_pretrained(tiny_models, images, tmp_path):
    prm = PRM.from_pretrained(str(tiny_models["prm"]), "cpu")
    torch.nn.init.normal_(prm.head.weight, std=0.05)
    prm.save_pretrained(tmp_path / "prm")
    assert (tmp_path / "prm" / HEAD_FILE).is_file()
    again = PRM.from_pretrained(str(tmp_path / "prm"), "cpu")
    item = [Sample(images[0], "Q?", ["Step 1: x"])]
    with torch.no_grad():
        torch.testing.assert_close(prm.score(item), again.score(item))


def test_bf16_loading_really_is_bf16(tiny_models):
    model, _ = load_vlm(str(tiny_models["prm"]), "cpu", precision="bf16")
    assert next(model.parameters()).dtype == torch.bfloat16
    assert pick_dtype("auto", torch.device("cpu")) == torch.float32


def test_shared_prefill_gives_the_logits_of_a_full_forward(tiny_models, images):
    from dreamprm.models import _encode, _shared_prefill

    model, proc = load_vlm(str(tiny_models["policy"]), "cpu")
    batch = [(images[0], prompts.completion_prompt("Q?", "Step 1: Look.\n\n")), (images[1], "Describe it.")]
    inputs = _encode(proc, proc.tokenizer, batch)
    rows = torch.tensor([0, 0, 0, 1, 1])
    with torch.no_grad():
        full = model(**inputs).logits[:, -1]
        cache = _shared_prefill(model, inputs, rows)
        last = model(input_ids=inputs["input_ids"][rows, -1:], attention_mask=inputs["attention_mask"][rows],
                     past_key_values=cache).logits[:, -1]
    torch.testing.assert_close(last, full[rows], atol=1e-5, rtol=1e-4)


def test_repeated_prompts_get_their_own_samples(tiny_models, images):
    model, proc = load_vlm(str(tiny_models["policy"]), "cpu")
    torch.manual_seed(0)
    batch = [(images[0], "Describe it.")] * 3 + [(images[1], "Count.")]
    out = generate(model, proc, batch, n=2, temperature=1.0, max_new_tokens=6, batch_size=4, progress=False)
    assert [len(o) for o in out] == [2, 2, 2, 2]
    assert len({t for o in out[:3] for t in o}) > 1  # six independent samples of one prompt, not one repeated


def test_a_saved_prm_remembers_its_input_format(tiny_models, tmp_path):
    from dreamprm.prm import saved_format

    prm = PRM.from_pretrained(str(tiny_models["prm"]), "cpu", fmt="stepwise")
    assert saved_format(tiny_models["prm"]) is None and PRM.from_pretrained(str(tiny_models["prm"]), "cpu").fmt == "paper"
    prm.save_pretrained(tmp_path / "p")
    assert saved_format(tmp_path / "p") == "stepwise"
    assert PRM.from_pretrained(str(tmp_path / "p"), "cpu").fmt == "stepwise"


def test_a_saved_prm_remembers_where_its_prefixes_end(tiny_models, tmp_path):
    import json

    from dreamprm.prm import CONFIG_FILE

    assert PRM.from_pretrained(str(tiny_models["prm"]), "cpu").prefix_end == "stripped"  # a base model
    PRM.from_pretrained(str(tiny_models["prm"]), "cpu", prefix_end="raw").save_pretrained(tmp_path / "p")
    assert PRM.from_pretrained(str(tmp_path / "p"), "cpu").prefix_end == "raw"
    # a PRM directory saved before prefix_end existed was trained on the text as written
    (tmp_path / "p" / CONFIG_FILE).write_text(json.dumps({"input_format": "paper"}))
    assert PRM.from_pretrained(str(tmp_path / "p"), "cpu").prefix_end == "raw"
    with pytest.raises(ValueError, match="prefix_end"):
        PRM.from_pretrained(str(tiny_models["prm"]), "cpu", prefix_end="lstrip")
