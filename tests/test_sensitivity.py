"""The int8 simulation (edgeasc.deploy.sensitivity) and data-aware weight rounding (edgeasc.train.qat.round_weights)."""

import numpy as np
import pytest
import torch
from conftest import randomize_batchnorm

from edgeasc.deploy.onnx import exported_network
from edgeasc.deploy.runtime import InputNormalization
from edgeasc.deploy.sensitivity import Int8Simulator, format_sensitivity, sensitivity_table
from edgeasc.models import create_model
from edgeasc.train.qat import round_to_minimise_error, round_weights


def _sim(name="test_sscp_mobile", norm=True):
    torch.manual_seed(0)
    model = randomize_batchnorm(create_model(name))
    x = torch.randn(24, 1, 256, 65) * 2.2 - 6.0
    n = InputNormalization.of(x.numpy()) if norm else None
    u = torch.from_numpy(n.apply(x.numpy())) if n else x
    return Int8Simulator(exported_network(model, n), u[:16]), u[16:], model, x[16:]


def test_points_follow_tflite_quantisation_places():
    sim, _, _, _ = _sim()
    names = [p.name for p in sim.points]
    assert names[0] == "input"
    # the first convolutions keep their names through the normalisation wrapper; ReLUs are fused into them
    assert {"in_c.0.0", "in_c.0.0.weight", "in_c2.0.0", "in_c2.0.0.weight", "add"} <= set(names)
    assert not any(n.endswith(".2") and "in_c" in n for n in names)  # no separate ReLU points
    kinds = {p.kind for p in sim.points}
    assert kinds == {"input", "weights", "activation"}
    assert names[-1] == "feed_forward.2"  # the mean over the head's output: the logits tensor
    # each activation point has its calibration range, widened by the rounding to include 0
    for p in sim.points:
        if p.kind != "weights":
            lo, hi = sim.ranges[p.node]
            assert lo <= hi


def test_simulation_without_rounding_is_the_float_network_and_rounding_moves_it():
    sim, u, model, x = _sim()
    with torch.no_grad():
        want = model(x)
    torch.testing.assert_close(sim.run(u, set()), want, atol=1e-4, rtol=0)
    everything = sim.run(u, "all")
    assert (everything - want).abs().max() > 1e-3
    # 16-bit activations round far finer than 8-bit ones
    acts = {p.name for p in sim.points if p.kind != "weights"}
    err8 = (sim.run(u, acts) - want).abs().mean()
    err16 = (sim.run(u, acts, bits16=acts) - want).abs().mean()
    assert err16 < err8 / 20
    with pytest.raises(ValueError, match="unknown quantisation points"):
        sim.run(u, {"nope"})


def test_sensitivity_table_rows_and_summary():
    sim, u, _, _ = _sim()
    y = np.arange(len(u)) % 10
    table = sensitivity_table(sim, u, y)
    assert len(table["rows"]) == len(sim.points) and table["n_clips"] == len(u)
    costs = [r["agreement_cost_pp"] for r in table["rows"]]
    assert costs == sorted(costs, reverse=True)
    for key in ("all", "weights_only", "activations_only"):
        assert 0.0 <= table[key]["agreement"] <= 1.0
    text = format_sensitivity(table, top=5)
    assert "everything" in text and len(text.splitlines()) == 1 + 1 + 5 + 3


def test_data_aware_rounding_by_hand():
    # two weights at half a step each, summed by the input (covariance of ones): nearest (banker's) rounding
    # gives 0, 0 and an output error of -1 step; rounding one of them up cancels it
    q = round_to_minimise_error(np.array([0.5, 0.5]), np.ones((2, 2)))
    assert sorted(q.tolist()) == [0, 1]
    # with independent inputs (identity covariance) nearest rounding is already optimal
    v = np.array([0.2, -1.7, 3.4, 126.6])
    assert round_to_minimise_error(v, np.eye(4)).tolist() == [0, -2, 3, 127]
    # never beyond the grid, never further than the other neighbour
    q = round_to_minimise_error(np.array([126.9, -126.9, 0.49]), np.ones((3, 3)))
    assert np.all(np.abs(q) <= 127) and np.all(np.abs(q - np.array([126.9, -126.9, 0.49])) < 1)


def test_data_aware_rounding_lowers_the_output_error_of_a_first_layer():
    sim, u, _, _ = _sim("test_cpmobile", norm=False)  # raw log-mel: mean -6, the case that needs it
    conv = sim.modules["in_c.0.0"]
    cov = sim.input_covariances(u)["in_c.0.0"]
    q, scale = round_weights(conv.weight, cov, conv.groups)
    assert q.shape == conv.weight.shape and np.abs(q).max() <= 127
    w = conv.weight.detach().double().numpy()
    nearest = np.round(w / scale.reshape(-1, 1, 1, 1))
    assert np.all(np.abs(q - w / scale.reshape(-1, 1, 1, 1)) < 1)  # floor or ceil of every weight

    def err(ints):
        e = (ints * scale.reshape(-1, 1, 1, 1) - w).reshape(len(w), -1)
        return float(np.einsum("oi,ij,oj->", e, cov[0], e))

    assert err(q) < 0.5 * err(nearest)


def test_bias_correction_cancels_the_mean_output_error_and_replaces_an_earlier_one():
    sim, u, model, _ = _sim()
    x = sim_x = u  # the clips it is corrected and judged on
    with torch.no_grad():
        ref = sim.run(x, set())
        before = ((sim.run(x, "all") - ref).mean(0)).abs().mean()
    first = sim.correct_biases(sim_x)
    assert first and all(np.isfinite(v).all() for v in first.values())
    with torch.no_grad():
        after = ((sim.run(x, "all") - ref).mean(0)).abs().mean()
    assert after < before  # the mean logit error of the corrected network, on its own clips
    again = sim.correct_biases(sim_x)  # measured afresh, not on top of the first
    for k in first:
        np.testing.assert_allclose(again[k], first[k], rtol=1e-6, atol=1e-9)
    torch.testing.assert_close(sim.run(x, set()), ref)  # the float network keeps its own biases
