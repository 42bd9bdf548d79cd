"""The training X-ray (cnnlab.xray): its statistics against a direct computation, the schedule and size
bounds, each diagnosis provoked by a training that has the problem (and none for a healthy one), the run
folder's files read back safely, and ``python -m cnnlab xray``."""

from __future__ import annotations

import json
import math

import pytest
import torch
from apphelpers import train_run, using_cache
from torch import nn

from cnnlab import runs, xray
from cnnlab.cli import main
from cnnlab.distributed import Alone
from cnnlab.events import KernelsEvent, XrayEvent
from cnnlab.models import create
from cnnlab.train import TrainConfig, fit
from test_train_data import digits_bundle

BASE = dict(dataset="digits", epochs=2, device="cpu", seed=0)


# ---- the statistics ---------------------------------------------------------------------------------


class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 3, 3)
        self.relu = nn.ReLU()
        self.fc = nn.Linear(3 * 4 * 4, 5)
        self.tanh = nn.Tanh()
        self.out = nn.Linear(5, 2)

    def forward(self, x):
        return self.out(self.tanh(self.fc(self.relu(self.conv(x)).flatten(1))))


def test_probe_statistics_match_a_direct_computation():
    torch.manual_seed(0)
    model = Tiny()
    with torch.no_grad():
        model.conv.bias[1] = -100.0  # channel 1 never fires: one dead channel of three
        model.fc.weight.mul_(20)  # large weights: many saturated tanh outputs
    x, y = torch.randn(8, 1, 6, 6), torch.randint(0, 2, (8,))
    before = {n: m.weight.detach().clone() for n, m in xray.weighted_layers(model)}
    opt = torch.optim.SGD(model.parameters(), lr=0.1)

    with torch.no_grad():  # what the activations put out, computed directly (before any hook)
        relu_out = model.relu(model.conv(x))
        tanh_out = model.tanh(model.fc(relu_out.flatten(1)))
    probe = xray.Probe(model, Alone(torch.device("cpu")), step=7, every=5)
    loss = nn.functional.cross_entropy(model(x), y)
    loss.backward()
    grads = {n: m.weight.grad.detach().clone() for n, m in xray.weighted_layers(model)}
    probe.gradients(scale=4.0)  # as if mixed precision had scaled the loss by 4
    opt.step()
    probe.updated()
    probe.close()
    event = probe.event(epoch=2)
    assert isinstance(event, XrayEvent) and (event.step, event.epoch, event.every) == (7, 2, 5)

    layers = {e["name"]: e for e in event.layers}
    assert list(layers) == ["conv", "fc", "out"]
    for name, m in xray.weighted_layers(model):
        e = layers[name]
        assert e["n"] == m.weight.numel() and e["type"] == type(m).__name__
        assert e["weight_norm"] == pytest.approx(float(before[name].norm()), rel=1e-5)
        assert e["grad_norm"] == pytest.approx(float(grads[name].norm()) / 4.0, rel=1e-5)
        step = float((m.weight.detach() - before[name]).norm())
        assert e["update_ratio"] == pytest.approx(step / float(before[name].norm()), rel=1e-4)
        assert e["update_ratio"] == pytest.approx(0.1 * float(grads[name].norm()) / float(before[name].norm()), rel=1e-4)

    relu, tanh = event.activations
    assert (relu["name"], relu["kind"], relu["after"]) == ("relu", "relu", "conv")
    assert (tanh["name"], tanh["kind"], tanh["after"]) == ("tanh", "tanh", "fc")
    assert relu["mean"] == pytest.approx(float(relu_out.mean()), rel=1e-5)
    assert relu["std"] == pytest.approx(float(relu_out.std(unbiased=False)), rel=1e-4)
    alive = (relu_out > 0).flatten(2).any(dim=2).any(dim=0)
    assert relu["dead"] == pytest.approx(float((~alive).float().mean())) and relu["dead"] >= 1 / 3
    assert relu["saturated"] == 0.0
    assert tanh["saturated"] == pytest.approx(float((tanh_out.abs() > xray.SATURATION).float().mean()))
    assert tanh["saturated"] > 0.3 and tanh["dead"] == 0.0
    assert not any(h for h in probe.handles)  # closed: no hook left on the model
    assert all(not m._forward_hooks for m in model.modules())


def test_a_step_stopped_before_its_update_reports_nothing_and_leaves_no_hook():
    model = Tiny()
    probe = xray.Probe(model, Alone(torch.device("cpu")), step=1, every=10)
    model(torch.randn(2, 1, 6, 6))
    probe.close()
    assert probe.event(1) is None
    assert all(not m._forward_hooks for m in model.modules())


def test_schedule_first_step_then_every_n_within_the_size_bound():
    assert [s for s in range(1, 40) if xray.sampled(s, 10)] == [1, 10, 20, 30]
    assert xray.choose_every(100, 10) == xray.MIN_EVERY
    assert xray.choose_every(3_000, 10) == 30
    assert xray.choose_every(1_000_000, 10) == xray.MAX_EVERY
    assert xray.choose_every(100, 10, requested=3) == 3
    # so many layers that the size bound decides
    many = xray.choose_every(100, 2_000)
    assert many * 1 >= 2_000 * xray.BYTES_PER_ENTRY * 10_000 / xray.MAX_BYTES_PER_10K_STEPS


@pytest.mark.parametrize("model, shape", [("lenet_v2", (1, 28, 28)), ("cifar_resnet", (3, 32, 32)),
                                          ("d2l_resnet18", (1, 32, 32)), ("d2l_densenet", (1, 32, 32))])
def test_the_run_folder_grows_by_at_most_2_mb_per_10000_steps(model, shape):
    """One sampled step's line of xray.jsonl, times the samples of 10,000 steps at the chosen interval."""
    torch.manual_seed(0)
    net = create(model, num_classes=10, in_channels=shape[0], input_size=shape[1:])
    every = xray.Xray(net, Alone(torch.device("cpu")), total_steps=10_000, epochs=10).every
    probe = xray.Probe(net, Alone(torch.device("cpu")), step=every, every=every)
    try:
        nn.functional.cross_entropy(net(torch.randn(2, *shape)), torch.tensor([0, 1])).backward()
        probe.gradients()
        probe.updated()
    finally:
        probe.close()
    line = json.dumps(xray.compact(probe.event(1))) + "\n"
    assert len(line.encode()) * (10_000 / every + 1) <= xray.MAX_BYTES_PER_10K_STEPS


# ---- the diagnoses, provoked ------------------------------------------------------------------------


def _diagnoses(config: TrainConfig, model: nn.Module | None = None) -> tuple[list[str], list[XrayEvent]]:
    events: list = []
    result = fit(config, model=model, data=digits_bundle(), listeners=[events.append])
    assert result.status == "finished"
    samples = [e for e in events if isinstance(e, XrayEvent)]
    return xray.diagnose(samples), samples


def test_a_healthy_lenet_v2_on_digits_gets_no_diagnosis():
    found, samples = _diagnoses(TrainConfig(model="lenet_v2", **BASE))
    assert [s.step for s in samples] == [1, 20, 40]
    assert found == []


def test_tanh_saturation_from_a_large_initialisation():
    torch.manual_seed(0)
    model = create("lenet", num_classes=10, in_channels=1)
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(10)
    found, _ = _diagnoses(TrainConfig(model="lenet", **BASE), model)
    (sentence,) = [d for d in found if "saturated" in d]
    assert sentence.split("%")[0].isdigit() and int(sentence.split("%")[0]) >= 50
    assert "of the tanh units after S2" in sentence


def test_dead_relus_from_a_large_negative_bias():
    torch.manual_seed(0)
    model = create("lenet_v2", num_classes=10, in_channels=1)
    with torch.no_grad():
        model.C3.bias.fill_(-10.0)
    found, _ = _diagnoses(TrainConfig(model="lenet_v2", **BASE), model)
    assert any(d.startswith("100% of the relu units after S4") and "never fire" in d for d in found), found
    # no gradient reaches C1 through the dead units: said, with the dead units as the reason
    assert any("(C1) are zero" in d and "dead units below block them" in d for d in found), found


def test_vanishing_gradients_in_a_deep_plain_sigmoid_network():
    torch.manual_seed(0)
    layers: list[nn.Module] = [nn.Flatten(), nn.Linear(784, 32), nn.Sigmoid()]
    for _ in range(8):
        layers += [nn.Linear(32, 32), nn.Sigmoid()]
    model = nn.Sequential(*layers, nn.Linear(32, 10))
    found, _ = _diagnoses(TrainConfig(model="mlp_100", optimizer="sgd", lr=0.1, **BASE), model)
    (sentence,) = [d for d in found if "vanishing gradients" in d]
    assert sentence.startswith("The first layer's gradients (Linear layer 1) are ")
    times = float(sentence.split(" are ")[1].split(" times")[0].replace(",", ""))
    assert times >= xray.VANISHING_RATIO
    # the small steps of the first layers come from the gradients: no blame on the learning rate
    assert not any("learning rate is far too small" in d for d in found)


def test_a_learning_rate_of_1e_5_is_far_too_small():
    found, samples = _diagnoses(TrainConfig(model="lenet_v2", optimizer="sgd", lr=1e-5, **BASE))
    (sentence,) = [d for d in found if "learning rate is far too small" in d]
    ratio = float(sentence.split("by ")[1].split(" of")[0])
    assert ratio < xray.SMALL_UPDATE and ratio == pytest.approx(
        xray._median(xray._median(e["update_ratio"] for e in entries)
                     for entries in xray._by_name([asdict_(s) for s in samples[-xray.RECENT:]], "layers").values()),
        rel=0.5)


def asdict_(event: XrayEvent) -> dict:
    from dataclasses import asdict
    return asdict(event)


def test_diagnoses_on_synthetic_samples_say_what_the_numbers_say():
    def sample(step, sat=0.0, dead=0.0, upd=1e-3, g_first=1e-2):
        layers = [{"name": "C1", "type": "Conv2d", "n": 100, "weight_norm": 1.0, "grad_norm": g_first * 10,
                   "update_ratio": upd},
                  {"name": "C3", "type": "Conv2d", "n": 100, "weight_norm": 1.0, "grad_norm": 0.1, "update_ratio": upd},
                  {"name": "F7", "type": "Linear", "n": 100, "weight_norm": 1.0, "grad_norm": 0.1, "update_ratio": upd}]
        acts = [{"name": "act", "kind": "tanh", "after": "S2", "mean": 0.0, "std": 1.0, "dead": 0.0, "saturated": sat},
                {"name": "act#2", "kind": "relu", "after": "conv3", "mean": 0.0, "std": 1.0, "dead": dead,
                 "saturated": 0.0}]
        return {"step": step, "epoch": 1, "layers": layers, "activations": acts, "every": 10}

    assert xray.diagnose([]) == []
    assert xray.diagnose([sample(i) for i in range(5)]) == []
    assert xray.diagnose([sample(i, sat=0.74) for i in range(5)]) == [
        "74% of the tanh units after S2 are saturated: their output is within 1% of its limits, where the slope is "
        "almost zero, so little gradient passes through them. Smaller initial weights, normalised inputs or ReLU help."]
    (dead,) = xray.diagnose([sample(i, dead=0.52) for i in range(5)])
    assert dead.startswith("52% of the relu units after conv3 never fire")
    # one noisy sample out of five decides nothing: the median of the recent ones does
    assert xray.diagnose([sample(0, sat=0.9), *[sample(i) for i in range(1, 5)]]) == []
    (small,) = xray.diagnose([sample(i, upd=1e-6) for i in range(5)])
    assert small.startswith("Each step changes the weights by 1e-06 of their size")
    (large,) = xray.diagnose([sample(i, upd=0.5) for i in range(5)])
    assert "50% of their size" in large and "too large" in large
    (vanish,) = xray.diagnose([sample(i, g_first=1e-5) for i in range(5)])
    assert vanish.startswith("The first layer's gradients (C1) are 1,000 times smaller than the last layer's (F7)")


# ---- the run folder ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def run_id(tmp_path_factory):
    with using_cache(tmp_path_factory.mktemp("xray-cache")) as cache:
        result = train_run(TrainConfig(model="lenet_v2", **BASE), data=digits_bundle())
    return cache, result.run_id


@pytest.fixture
def stored(run_id, monkeypatch):
    cache, rid = run_id
    monkeypatch.setenv("CNNLAB_CACHE", str(cache))
    return rid


def test_a_run_keeps_its_samples_and_its_kernels_per_epoch(stored):
    record = runs.run_xray(stored)
    assert [s["step"] for s in record.samples] == [1, 20, 40] and record.problems == []
    assert [k["epoch"] for k in record.kernels] == [0, 1, 2]
    first, last = (xray.kernels_array(k) for k in (record.kernels[0], record.kernels[-1]))
    assert first.shape == (6, 1, 5, 5) and not (first == last).all()  # the filters moved while it learnt
    model = runs.load_model(stored)  # the best epoch's weights: the last snapshot is the last epoch's
    scale = (record.kernels[-1]["high"] - record.kernels[-1]["low"]) / 255
    if runs.load_run(stored).status_record.get("best_epoch") == 2:
        assert abs(last - model.C1.weight.detach().numpy()).max() <= scale / 2 + 1e-6
    series = record.series()
    assert series["steps"] == [1, 20, 40]
    assert list(series["layers"]) == ["C1", "C3", "F5", "F6", "F7"]
    assert series["layers"]["C1"]["grad_norm"][0] > 0
    assert list(series["activations"]) == ["activation", "activation#2", "activation#3", "activation#4"]


def test_damaged_x_ray_files_are_read_as_far_as_they_can_be(stored, tmp_path):
    folder = runs.load_run(stored).path
    lines = (folder / "xray.jsonl").read_text().splitlines()
    bad = tmp_path / "damaged"
    bad.mkdir()
    (bad / "xray.jsonl").write_text("\n".join([lines[0], "{not json", json.dumps({"step": "x"}),
                                               json.dumps({"step": 5, "layers": [{"name": 3}], "activations": []}),
                                               lines[1], "\xff\xfe"]) + "\n")
    (bad / "kernels.jsonl").write_text(json.dumps({"epoch": 0, "layer": "C1", "shape": [6, 1, 5, 5], "low": 0,
                                                   "high": 1, "data": "AAAA"}) + "\n")
    record = xray.read_xray(bad)
    assert [s["step"] for s in record.samples] == [1, 20]
    assert record.kernels == []
    assert any("4 line(s) of xray.jsonl" in p for p in record.problems)
    assert any("kernels.jsonl" in p for p in record.problems)
    # too large: not read at all; a link: never followed
    big = tmp_path / "big"
    big.mkdir()
    with open(big / "xray.jsonl", "wb") as f:
        f.truncate(xray.MAX_XRAY_BYTES + 1)
    assert xray.read_xray(big).samples == [] and "larger than" in xray.read_xray(big).problems[0]
    linked = tmp_path / "linked"
    linked.mkdir()
    (linked / "xray.jsonl").symlink_to(folder / "xray.jsonl")
    assert xray.read_xray(linked).samples == []
    # no X-ray at all (a run from before it): empty, no problem
    assert xray.read_xray(tmp_path / "nothing") == xray.XrayRecord()


def test_kernels_round_trip_within_one_quantisation_step():
    conv = nn.Conv2d(3, 4, 3)
    model = nn.Sequential(conv)
    event = xray.kernels_event(model, 0)
    assert isinstance(event, KernelsEvent) and event.layer == "0" and event.shape == [4, 3, 3, 3]
    back = xray.kernels_array(event)
    assert abs(back - conv.weight.detach().numpy()).max() <= (event.high - event.low) / 255 / 2 + 1e-6
    assert xray.kernels_event(nn.Sequential(nn.Linear(2, 2)), 0) is None


def test_xray_off_records_nothing(tmp_path):
    events: list = []
    fit(TrainConfig(model="lenet_v2", xray=False, max_steps=12, **BASE), data=digits_bundle(), listeners=[events.append])
    assert not any(isinstance(e, (XrayEvent, KernelsEvent)) for e in events)
    events.clear()
    fit(TrainConfig(model="lenet_v2", xray_every=4, max_steps=12, **BASE), data=digits_bundle(),
        listeners=[events.append])
    assert [e.step for e in events if isinstance(e, XrayEvent)] == [1, 4, 8, 12]


# ---- the command line ---------------------------------------------------------------------------------


def test_cli_xray_text_and_json(stored, capsys):
    assert main(["xray", stored]) == 0
    out = capsys.readouterr().out
    assert f"run {stored}: 3 samples, every 20 steps; the last at step 40 (epoch 2)." in out
    assert "Nothing stands out" in out and "C1" in out and "activation#4" in out
    assert main(["xray", stored, "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["run"] == stored and data["steps"] == [1, 20, 40] and data["diagnoses"] == []
    assert set(data["layers"]["F7"]) == {"step", "weight_norm", "grad_norm", "update_ratio"}
    assert all(math.isfinite(v) for v in data["layers"]["F7"]["grad_norm"])
    assert data["kernel_epochs"] == [0, 1, 2]


def test_cli_xray_of_an_unknown_run_is_one_clear_error(capsys, stored):
    assert main(["xray", "no-such-run"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "no-such-run" in err and "Traceback" not in err


def test_a_lesson_result_says_why_an_arm_did_not_learn(capsys):
    """learning-rate, one epoch: the arm at lr 0.001 gets "far too small", the one at lr 10 "too large"; the result
    stores them, and the lesson's text output prints them."""
    assert main(["lesson", "learning-rate", "--set", "epochs=1", "--json"]) in (0, 130)
    result = json.loads(capsys.readouterr().out)
    said = {a["id"]: a["diagnoses"] for a in result["arms"]}
    assert any("learning rate is far too small" in d for d in said["small"]), said
    assert any("learning rate is too large" in d for d in said["large"]), said
    assert said["good"] == []
    from cnnlab.lessons.runner import load_result
    assert [a["diagnoses"] for a in load_result(result["id"]).data["arms"]] == list(said.values())
