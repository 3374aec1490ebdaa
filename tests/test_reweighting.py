"""The bi-level loop on the tiny Qwen2-VL PRM, CPU, text-only synthetic data (fast)."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from dreamprm.cli import parse_args
from dreamprm.reweighting import DomainWeights, ReweightConfig, Reweighter, train
from dreamprm.miniworld.synthetic import write_reweighting_problem


def write_problem(root, per_domain=12, image=None):
    write_reweighting_problem(root, per_domain=per_domain, image=image)


def config(root, prm, *extra):
    return parse_args(ReweightConfig, ["--path", str(root), "--train", "train.jsonl", "--meta", "meta.jsonl",
                                       "--prm", str(prm), "--out", "run", "--figs", "figs", "--gpu", "cpu",
                                       "--precision", "fp32", "--lr", "2e-3", "--meta_lr", "0.05",
                                       "--log_every", "5", "--save_every", "1000", *extra])


def test_domain_weights_start_at_one_and_average_one():
    w = DomainWeights(["a", "b", "c"])
    assert torch.allclose(w(), torch.ones(3))
    with torch.no_grad():
        w.raw.copy_(torch.tensor([2.0, -1.0, 0.3]))
    with torch.no_grad():
        assert abs(float(w().mean()) - 1) < 1e-6 and w().min() > 0


@pytest.mark.parametrize("kind,reweight", [("scalar", "domain"), ("scalar", "instance_table"),
                                           ("generative", "domain"), ("generative", "instance_table"),
                                           ("generative", "instance_net"), ("generative", "instance_net_input_grad"),
                                           ("generative", "instance_net_label")])
def test_hypergradient_matches_autograd(tmp_path, tiny_models, kind, reweight):
    """The darts hypergradient reaching the upper level (domain weights, the instance table, or the instance net's
    parameters) in one real step agrees with exact autograd (cosine >= 0.99), for both PRM kinds."""
    write_problem(tmp_path, per_domain=4)
    input_grad = reweight.endswith("_input_grad")  # the 1.5 release's net: the PRM's gradient also flows through w
    net_input = "label" if reweight.endswith("_label") else "plus_minus"  # the net reads P(label), P(other)
    reweight = reweight.removesuffix("_input_grad").removesuffix("_label")
    cfg = config(tmp_path, tiny_models["prm"], "--iterations", "5", "--train_batch_size", "4",
                 "--reweight", reweight, f"--net_input_grad={input_grad}", "--net_input", net_input,
                 "--prm_kind", kind, "--net_hidden", "16", "--meta_lr", "0")  # alpha stays where its gradient was taken
    r = Reweighter(cfg)
    r.run()
    got = r.upper.last_grad
    lower, upper = r.lower, r.upper
    params = lower.trainable_parameters()
    # v = dL_meta / dphi at the phi the upper step saw (betty ran no lower step after it).
    meta_loss = upper.training_step(upper.cur_batch)["loss"]
    v = torch.autograd.grad(meta_loss, params, allow_unused=True)
    v = [torch.zeros_like(p) if g is None else g for p, g in zip(params, v)]
    # exact: -d/dalpha (dL_train/dphi . v), and L_train = mean_i w_i(alpha) l_i(phi) is linear in w, so
    # it is -d/dalpha mean_i w_i(alpha) (dl_i/dphi . v): per-row first derivatives, no double backward.
    # (The instance net reads its lower step's logits, detached by default, so its weights add no term through phi.)
    batch = lower.cur_batch
    per, two_way = lower._losses(batch)
    if input_grad:  # w depends on phi too: the mixed second derivative, by double backward (math attention has one)
        from torch.nn.attention import SDPBackend, sdpa_kernel

        alpha = list(r.weights.parameters())
        with sdpa_kernel(SDPBackend.MATH):
            per, two_way = lower._losses(batch)
            g = torch.autograd.grad((r.weights(two_way, batch["counts"]) * per).mean(), params, create_graph=True,
                                    allow_unused=True)
        dot = sum((gi * vi).sum() for gi, vi in zip(g, v) if gi is not None)
        exact = torch.cat([x.flatten() for x in torch.autograd.grad(dot, alpha)])
        cos = torch.nn.functional.cosine_similarity(got, -exact, dim=0)
        assert got.abs().sum() > 0 and cos >= 0.99, (got, -exact, cos)
        return
    dots = []
    for i in range(len(per)):
        gi = torch.autograd.grad(per[i], params, retain_graph=True, allow_unused=True)
        dots.append(sum((g * vi).sum() for g, vi in zip(gi, v) if g is not None))
    if reweight == "instance_net":
        w, alpha = r.weights(lower._net_input(batch, two_way), batch["counts"]), list(r.weights.parameters())
    else:
        w, alpha = r.weights()[batch["weight_rows"]], [r.weights.raw]
    exact = torch.cat([g.flatten() for g in torch.autograd.grad((w * torch.stack(dots).detach()).mean(), alpha)])
    cos = torch.nn.functional.cosine_similarity(got, -exact, dim=0)
    assert got.abs().sum() > 0 and cos >= 0.99, (got, -exact, cos)
    if reweight == "instance_table":  # only the instances of the last lower batch get a hypergradient
        assert (got != 0).sum() <= len(set(batch["weight_rows"].tolist()))


def test_instance_table_run_saves_each_instance_weight_with_its_id_and_a_per_domain_summary(tmp_path, tiny_models):
    write_problem(tmp_path, per_domain=3)
    lines = (tmp_path / "train.jsonl").read_text().splitlines()
    recs = [json.loads(x) for x in lines]
    recs[0]["instance"] = "hand-made-0"  # a user's own id wins over the file:line
    (tmp_path / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    summary = train(config(tmp_path, tiny_models["prm"], "--iterations", "10", "--train_batch_size", "2",
                           "--reweight", "instance_table", "--activation", "clip", "--initialization", "0.5"))
    rows = json.loads((tmp_path / "run/instance_weights.json").read_text())
    assert len(rows) == len(recs) and rows[0]["instance"] == "hand-made-0"
    assert rows[1]["instance"] == f"{tmp_path / 'train.jsonl'}:2" and rows[1]["domain"] == recs[1]["dataset"]
    assert all(-1.0 <= r["weight"] <= 3.0 for r in rows) and any(r["weight"] != 0.5 for r in rows)
    by_domain = summary["instance_weights_by_domain"]
    assert sum(d["n"] for d in by_domain.values()) == len(recs) and summary["reweight"] == "instance_table"
    for d, stats in by_domain.items():
        ws = [r["weight"] for r in rows if r["domain"] == d]
        assert stats["mean"] == pytest.approx(sum(ws) / len(ws), abs=1e-5)
        assert summary["weights"][d] == stats["mean"]
    log = [json.loads(x) for x in (tmp_path / "run/log.jsonl").read_text().splitlines()]
    assert log[-1]["instance_weights_by_domain"] == by_domain and set(log[-1]["weights"]) == set(by_domain)
    assert (tmp_path / "figs/domain_weights.png").stat().st_size > 0


def test_duplicate_instance_ids_are_refused_naming_the_file(tmp_path, tiny_models):
    write_problem(tmp_path, per_domain=2)
    recs = [json.loads(x) for x in (tmp_path / "train.jsonl").read_text().splitlines()]
    for r in recs[:2]:
        r["instance"] = "same"
    (tmp_path / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    from dreamprm.io import DataError
    with pytest.raises(DataError, match=r"train.jsonl: instance ids must be unique; 'same'"):
        Reweighter(config(tmp_path, tiny_models["prm"], "--reweight", "instance_table"))


@pytest.mark.slow
@pytest.mark.parametrize("fmt,released", [("paper", False), ("paper", True), ("stepwise", True)])
def test_noisy_domain_is_downweighted_and_baseline_stays_at_one(tmp_path, tiny_models, fmt, released):
    """released: train records as the authors released them (`add` ends at the step's text, no separator) with
    meta records whose steps are separated by blank lines, so train and meta prefixes must be read at the same
    positions in both formats, or the upper level judges what the lower level never trained. A from-scratch
    PRM first leaves its constant-output plateau in a warm-up (the lower level alone, every weight 1: the
    vanilla PRM), then the bi-level run starts from it, as the demo does."""
    write_reweighting_problem(tmp_path, per_domain=24, n_meta=16, released=released)
    adds = [json.loads(ln)["add"] for ln in (tmp_path / "train.jsonl").read_text().splitlines()]
    assert all(a.endswith("\n") != released for a in adds)
    common = ("--input_format", fmt, "--lr", "5e-4", "--train_batch_size", "8", "--meta_batch_size", "8")
    base = train(config(tmp_path, tiny_models["prm"], *common, "--iterations", "150", "--baseline", "--out", "base"))
    assert base["weights"] == {"clean_a": 1.0, "clean_b": 1.0, "noisy": 1.0}
    log = [json.loads(x) for x in (tmp_path / "base/log.jsonl").read_text().splitlines()]
    assert all(r["upper_loss"] is None and r["lower_loss"] == r["weighted_lower_loss"] for r in log)

    summary = train(config(tmp_path, base["prm"], *common, "--iterations", "150"))
    w = summary["weights"]
    assert w["noisy"] < min(1, w["clean_a"], w["clean_b"]), w
    log = [json.loads(x) for x in (tmp_path / "run/log.jsonl").read_text().splitlines()]
    assert [r["iteration"] for r in log] == list(range(5, 151, 5))
    assert all(r["upper_loss"] is not None for r in log)
    for f in ("domain_weights.png", "domain_weights_over_iterations.png"):
        assert (tmp_path / "figs" / f).stat().st_size > 1000
    assert json.loads((tmp_path / "run/domain_weights.json").read_text()) == w
    assert (tmp_path / "run/prm/prm_head.pt").is_file()


def test_bf16_really_computes_in_bf16(tmp_path, tiny_models):
    write_problem(tmp_path, per_domain=2)
    r = Reweighter(config(tmp_path, tiny_models["prm"], "--iterations", "5", "--precision", "bf16"))
    seen = []
    hook = lambda m, i, o: seen.append(o.dtype)  # noqa: E731
    r.prm.backbone.model.language_model.layers[0].mlp.down_proj.register_forward_hook(hook)
    r.run()
    assert seen and all(d == torch.bfloat16 for d in seen)
    assert next(r.prm.parameters()).dtype == torch.float32  # master weights stay fp32


def test_stepwise_format_and_images_train(tmp_path, tiny_models, images):
    images[1].save(tmp_path / "im.png")
    write_problem(tmp_path, per_domain=3, image="im.png")
    s = train(config(tmp_path, tiny_models["prm"], "--iterations", "5", "--input_format", "stepwise",
                     "--train_batch_size", "2"))
    assert set(s["weights"]) == {"clean_a", "clean_b", "noisy"}
    assert s["train_samples"] == 9  # nodes of one response grouped: 3 domains x 3 responses


def test_meta_records_without_steps_are_counted_not_fatal(tmp_path, tiny_models):
    write_problem(tmp_path, per_domain=2)
    with open(tmp_path / "meta.jsonl", "a") as f:
        f.write(json.dumps({"id": "q", "true_false": False, "input": "Only the question?", "image_path": None}) + "\n")
    s = train(config(tmp_path, tiny_models["prm"], "--iterations", "5", "--meta_batch_size", "9"))
    assert s["meta_without_steps"] == 1 and s["meta_records"] == 9
    s = train(config(tmp_path, tiny_models["prm"], "--iterations", "5", "--meta_without_steps", "skip",
                     "--out", "skip"))
    assert s["meta_records"] == 8 and s["meta_skipped"] == {"no steps": 1}
    assert s["skipped"]["meta_rule"]["kinds"]["no steps"]["first"][0].startswith(f"{tmp_path / 'meta.jsonl'}:9 ")
    assert s["skipped"]["meta"]["skipped"] == 0  # the rule's choice, not a bad record: no ceiling applies


def write_released_like_meta(path, n_with_steps=4, n_true_bare=3, n_false_bare=5):
    """A meta file shaped like the authors' released meta.json: every record with step text is true, every
    false record is a bare `Question: ...\nOptions: ...` without a response."""
    recs = []
    for i in range(n_with_steps):
        recs.append({"id": i, "true_false": True, "image_path": None,
                     "input": f"Question: What is {i} + 1?\nOptions: (A) {i + 1} (B) {i}\n\n"
                              f"Step 1: Add one to {i}.\n\nStep 2: That is {i + 1}, option A.\n\nFinal answer: A"})
    for i in range(n_true_bare + n_false_bare):
        recs.append({"id": 100 + i, "true_false": i < n_true_bare, "image_path": None,
                     "input": f"Question: Which is larger?\nOptions: (A) {i} (B) {i + 2}"})
    path.write_text(json.dumps(recs, indent=4))  # the released file is one JSON array


def test_meta_table_and_warning_on_a_released_like_meta_set(tmp_path, tiny_models, capsys):
    from dreamprm.samples import load_meta

    write_problem(tmp_path, per_domain=2)
    write_released_like_meta(tmp_path / "released_meta.json")
    md = load_meta(tmp_path / "released_meta.json", tmp_path)
    assert md.steps_by_label == {"true": {"with steps": 4, "without steps": 3}, "false": {"without steps": 5}}
    assert "every false record (5) is a bare question" in md.warning() and "inference/meta_data.py" in md.warning()
    assert load_meta(tmp_path / "meta.jsonl", tmp_path).warning() is None  # both labels come with steps
    s = train(config(tmp_path, tiny_models["prm"], "--iterations", "5", "--meta", "released_meta.json"))
    out = capsys.readouterr().out
    assert "WARNING: " in out and "no steps = wrong" in out
    table = out[out.index("meta records by label"):].splitlines()[1:4]
    assert [ln.split() for ln in table] == [["label", "with", "steps", "without", "steps"], ["true", "4", "3"],
                                            ["false", "0", "5"]]
    assert s["meta_steps_by_label"] == md.steps_by_label and s["meta_warning"] == md.warning()
    summary = json.loads((tmp_path / "run/summary.json").read_text())
    assert summary["meta_warning"].startswith(str(tmp_path / "released_meta.json"))


def test_bf16_weights_regime_steps_the_optimiser_on_bf16_weights(tmp_path, tiny_models):
    """The released code's regime: weights and optimiser state in bf16. At the paper's lr 5e-7 an Adam step
    (about lr per weight) is far below bf16's spacing, so the backbone's weights do not move; with fp32 master
    weights (the default regime) they do."""
    write_problem(tmp_path, per_domain=2)
    moved = {}
    for regime in ("bf16_weights", "bf16"):
        r = Reweighter(config(tmp_path, tiny_models["prm"], "--iterations", "2", "--lr", "5e-7", "--baseline",
                              "--precision", regime, "--out", regime))
        before = [p.detach().clone() for p in r.prm.backbone.parameters()]
        r.run()
        after = list(r.prm.backbone.parameters())
        assert {p.dtype for p in after} == {torch.bfloat16 if regime == "bf16_weights" else torch.float32}
        assert r.prm.head.weight.dtype == torch.float32
        if regime == "bf16_weights":
            states = [r.lower.optimizer.state[p] for p in after if p in r.lower.optimizer.state]
            assert states and all(st["exp_avg"].dtype == torch.bfloat16 for st in states)
        stepped = [(a, b) for a, b in zip(after, before) if a in r.lower.optimizer.state]  # text-only: no vision grads
        moved[regime] = sum(int((a != b).sum()) for a, b in stepped) / sum(a.numel() for a, _ in stepped)
    assert moved["bf16_weights"] < 0.01 < 0.5 < moved["bf16"], moved


def test_lower_optimiser_follows_the_released_defaults(tmp_path, tiny_models):
    write_problem(tmp_path, per_domain=2)
    r = Reweighter(config(tmp_path, tiny_models["prm"], "--iterations", "1")).build()
    lower, upper = r.lower.optimizer.defaults, r.upper.optimizer.defaults
    assert (lower["weight_decay"], lower["eps"]) == (0.0, 1e-6)
    assert (upper["lr"], upper["weight_decay"], upper["eps"]) == (0.05, 1e-3, 1e-6)


def test_unknown_domain_is_a_clear_error(tmp_path, tiny_models):
    write_problem(tmp_path, per_domain=2)
    with pytest.raises(ValueError, match="unknown domain.*noisy"):
        Reweighter(config(tmp_path, tiny_models["prm"], "--domains", "clean_a,clean_b"))


def test_refuses_to_overwrite_a_run_without_resume(tmp_path, tiny_models):
    write_problem(tmp_path, per_domain=2)
    train(config(tmp_path, tiny_models["prm"], "--iterations", "5"))
    with pytest.raises(FileExistsError, match="--resume"):
        train(config(tmp_path, tiny_models["prm"], "--iterations", "5"))


@pytest.mark.slow
def test_sigkill_and_resume_end_where_an_uninterrupted_run_ends(tmp_path, tiny_models):
    write_problem(tmp_path, per_domain=4)
    args = ["--path", str(tmp_path), "--train", "train.jsonl", "--meta", "meta.jsonl", "--prm",
            str(tiny_models["prm"]), "--figs", "figs", "--gpu", "cpu", "--precision", "fp32", "--lr", "2e-3",
            "--meta_lr", "0.05", "--log_every", "5", "--save_every", "10", "--iterations", "40"]
    script = str(Path(__file__).resolve().parents[1] / "reweighting" / "train.py")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    proc = subprocess.Popen([sys.executable, script, *args, "--out", "killed"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ck = tmp_path / "killed" / "checkpoints"
    deadline = time.time() + 120
    while not (ck / "step-20").is_dir() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert (ck / "step-20").is_dir() and not (tmp_path / "killed" / "summary.json").exists()
    subprocess.run([sys.executable, script, *args, "--out", "killed", "--resume"], env=env, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    subprocess.run([sys.executable, script, *args, "--out", "whole"], env=env, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    a = json.loads((tmp_path / "killed/summary.json").read_text())
    b = json.loads((tmp_path / "whole/summary.json").read_text())
    assert a["iterations"] == b["iterations"] == 40
    for k in a["weights"]:
        assert abs(a["weights"][k] - b["weights"][k]) < 1e-4, (a["weights"], b["weights"])
    log = [json.loads(x)["iteration"] for x in (tmp_path / "killed/log.jsonl").read_text().splitlines()]
    assert log == list(range(5, 41, 5))  # no row lost or doubled across the kill


def test_lora_and_gradient_checkpointing_train_save_and_resume(tmp_path, tiny_models):
    from dreamprm.prm import PRM

    write_problem(tmp_path, per_domain=2)
    args = ("--lora_rank", "4", "--gradient_checkpointing", "--save_every", "5")
    r = Reweighter(config(tmp_path, tiny_models["prm"], "--iterations", "5", *args))
    s = r.run()
    trainable = r.lower.trainable_parameters()
    n_all = sum(p.numel() for p in r.prm.parameters())
    assert 0 < sum(p.numel() for p in trainable) < n_all / 2  # adapters and head only
    assert any("lora" in n for n, p in r.prm.named_parameters() if p.requires_grad)
    merged = PRM.from_pretrained(s["prm"], "cpu")  # a plain PRM, adapters merged
    assert not any("lora" in n for n, _ in merged.named_parameters())
    sample = r.train_data.samples[:1]
    r.prm.eval()
    with torch.no_grad():
        torch.testing.assert_close(merged.score(sample), r.prm.score(sample), atol=1e-4, rtol=1e-4)
    s2 = train(config(tmp_path, tiny_models["prm"], "--iterations", "10", "--resume", *args))
    assert s2["iterations"] == 10


def test_distributed_strategy_without_cuda_is_a_clear_error(tmp_path, tiny_models):
    write_problem(tmp_path, per_domain=2)
    r = Reweighter(config(tmp_path, tiny_models["prm"], "--strategy", "distributed"))
    with pytest.raises(RuntimeError, match="needs CUDA.*torchrun"):
        r.build()


@pytest.mark.parametrize("fmt", ["paper", "stepwise"])
def test_tree_packed_upper_loss_and_gradients_equal_the_padded_batch(tmp_path, tiny_models, images, fmt):
    from dreamprm.aggregation import aggregate
    from dreamprm.packing import TreeScorer

    images[0].save(tmp_path / "im.png")
    write_problem(tmp_path, per_domain=2, image="im.png")
    r = Reweighter(config(tmp_path, tiny_models["prm"], "--input_format", fmt))
    samples, labels = r.meta_data.samples[:3], torch.tensor(r.meta_data.labels[:3])
    counts = [len(s.prefixes) for s in samples]
    losses, grads = [], []
    for score in (lambda: r.prm(r.prm.encoder(samples)), lambda: TreeScorer(r.prm).score(samples, grad=True)):
        r.prm.zero_grad()
        loss = torch.nn.functional.mse_loss(aggregate(score(), counts), labels)
        loss.backward()
        losses.append(loss.detach())
        grads.append(torch.cat([p.grad.flatten() for p in r.prm.parameters() if p.grad is not None]))
    torch.testing.assert_close(losses[0], losses[1], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(grads[0], grads[1], atol=1e-5, rtol=1e-3)


def test_with_frozen_weights_the_bilevel_run_trains_the_prm_exactly_like_the_baseline(tmp_path, tiny_models):
    """meta_lr 0: the upper level computes hypergradients but never moves the weights, so nothing in the
    bi-level machinery (darts perturbations, upper forwards) may change the PRM's trajectory."""
    write_problem(tmp_path, per_domain=4)
    runs = []
    for extra in (("--meta_lr", "0", "--out", "frozen"), ("--baseline", "--out", "base")):
        r = Reweighter(config(tmp_path, tiny_models["prm"], "--iterations", "15", "--train_batch_size", "4", *extra))
        r.run()
        assert set(r.weights.as_dict().values()) == {1.0}
        runs.append(torch.cat([p.detach().flatten() for p in r.prm.parameters()]))
    assert float((runs[0] - runs[1]).norm() / runs[1].norm()) < 1e-5


@pytest.mark.parametrize("fmt", ["paper", "stepwise"])
def test_train_samples_keep_their_question_ids(tmp_path, fmt):
    from dreamprm.io import read_records
    from dreamprm.samples import load_train

    write_problem(tmp_path, per_domain=2)
    td = load_train(tmp_path / "train.jsonl", tmp_path, fmt)
    records = read_records(tmp_path / "train.jsonl")
    # paper: a sample per node; stepwise: a sample per response (3 domains x 2 responses)
    assert len(td.samples) == len(td.ids) == (len(records) if fmt == "paper" else 6)
    by_id = {r["id"]: r["dataset"] for r in records}
    assert all(by_id[i] == d for i, d in zip(td.ids, td.domains))
    assert set(td.ids) == set(by_id)


@pytest.mark.parametrize("kind,reweight", [("scalar", "instance_table"), ("generative", "instance_net")])
def test_a_non_finite_instance_weight_stops_the_run_naming_it(tmp_path, tiny_models, kind, reweight):
    from dreamprm.io import DataError

    write_problem(tmp_path, per_domain=2)
    r = Reweighter(config(tmp_path, tiny_models["prm"], "--reweight", reweight, "--prm_kind", kind))
    r._check_finite(1, 0.5, 0.1)  # all finite: nothing said
    with torch.no_grad():
        next(r.weights.parameters()).view(-1)[1] = float("nan")
    want = rf"weight of {r.train_data.instances[1]} is nan" if reweight == "instance_table" else "instance net parameters is nan"
    with pytest.raises(DataError, match=rf"iteration 7: .*{want}.*training diverged"):
        r._check_finite(7, 0.5, 0.1)
