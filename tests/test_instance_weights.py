"""Instance weights (`dreamprm/instance_weights.py`): table, net, activations, per-domain summary."""
import pytest
import torch

from dreamprm.instance_weights import ACTIVATIONS, InstanceNet, InstanceTable, activation, per_domain


def test_the_table_starts_at_its_initialization_and_applies_the_activation():
    t = InstanceTable(["a", "b", "c"], "clip", initialization=1.0)
    assert t().tolist() == [1.0, 1.0, 1.0]
    with torch.no_grad():
        t.raw.copy_(torch.tensor([-5.0, 0.5, 9.0]))
    assert t().tolist() == [-1.0, 0.5, 3.0]  # the 1.5 release's clip to [-1, 3]
    assert t(torch.tensor([2, 0])).tolist() == [3.0, -1.0]
    assert t.as_dict() == {"a": -1.0, "b": 0.5, "c": 3.0}
    assert InstanceTable(["a"], "relu", -2.0)().item() == 0.0
    assert InstanceTable(["a"], "leaky_relu", -2.0)().item() == pytest.approx(-0.02)


def test_a_gradient_reaches_only_the_rows_used():
    t = InstanceTable(["a", "b", "c"], "none")
    (t(torch.tensor([1, 1])) * torch.tensor([2.0, 3.0])).sum().backward()
    assert t.raw.grad.tolist() == [0.0, 5.0, 0.0]


def test_duplicate_ids_and_unknown_activations_are_refused():
    with pytest.raises(ValueError, match="'a' appears more than once"):
        InstanceTable(["a", "b", "a"])
    with pytest.raises(ValueError, match="activation must be one of"):
        activation("tanh")
    assert set(ACTIVATIONS) == {"leaky_relu", "relu", "none", "clip", "sigmoid"}


def test_the_net_averages_its_outputs_over_each_instances_positions_before_the_activation():
    torch.manual_seed(0)
    net = InstanceNet(hidden=10, activation_name="sigmoid")
    logits = torch.randn(5, 2)
    got = net(logits, [2, 3])
    raw = net.mlp(logits.softmax(-1)).squeeze(-1)
    want = torch.sigmoid(torch.stack([raw[:2].mean(), raw[2:].mean()]))
    assert torch.allclose(got, want)
    assert net(logits + 7.0, [2, 3]).allclose(got)  # it sees the two-way softmax, not the raw logits


def test_per_domain_summary():
    got = per_domain({"x1": 1.0, "x2": 3.0, "y1": 0.5}, {"x1": "x", "x2": "x", "y1": "y"})
    assert got == {"x": {"mean": 2.0, "std": 1.0, "n": 2}, "y": {"mean": 0.5, "std": 0.0, "n": 1}}
