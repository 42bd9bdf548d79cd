"""AppTest of the Train page: its settings reach the job, survive a page switch, can be copied
from a run; a short training driven to the end through the page.

Jobs started only to look at their config are cancelled at once: no test waits for a training
to run for some wall-clock time."""

import pytest
from apphelpers import open_view, train_run


def start_and_cancel(at):
    """Press Start training; return the submitted job's config (the job is cancelled and awaited)."""
    from cnnlab.jobs import get_manager

    before = {j.id for j in get_manager().jobs()}
    at.button(key="train-start").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    job = get_manager().jobs()[-1]
    assert job.id not in before and job.id == at.session_state["train-job"]
    job.cancel()
    assert job.wait(120), "the cancelled job did not end"
    return job.config


def test_train_page_renders_controls():
    at = open_view("train")
    assert at.title[0].value == "Train"
    assert at.selectbox(key="train-model").value == "lenet"
    assert at.selectbox(key="train-data").value == "digits"
    assert not at.error


def test_widget_help_is_trainconfigs_wording():
    from dataclasses import fields

    from cnnlab.train import TrainConfig

    helps = {f.name: f.metadata["help"] for f in fields(TrainConfig)}
    at = open_view("train")
    assert at.number_input(key="train-momentum").help == helps["momentum"]
    assert at.selectbox(key="train-init").help == helps["init"]
    assert at.text_input(key="train-size").help == helps["input_size"]
    assert at.radio(key="train-val").help == helps["val_split"]


def test_widgets_take_bounds_choices_and_labels_from_trainconfig():
    from cnnlab import config

    at = open_view("train")
    for key, name in (("train-epochs", "epochs"), ("train-batch", "batch_size"), ("train-seed", "seed"),
                      ("train-wd", "weight_decay"), ("train-momentum", "momentum"), ("train-step", "step_size"),
                      ("train-gamma", "gamma"), ("train-valfrac", "val_fraction")):
        box = at.number_input(key=key)
        assert (box.min, box.max) == config.bounds(name), key
    assert at.number_input(key="train-seed").max == 2**31 - 1  # the whole range TrainConfig takes
    assert at.number_input(key="train-subset").max == config.bounds("subset")[1]  # min 0: all the images
    assert at.number_input(key="train-lr").min == config.bounds("lr")[0]
    for key, name in (("train-opt", "optimizer"), ("train-sched", "scheduler"), ("train-init", "init"),
                      ("train-aug", "augment")):
        labels = config.choice_labels(name)
        assert at.selectbox(key=key).options == [labels[c] for c in config.choices(name)], key
    assert at.radio(key="train-val").options == list(config.choice_labels("val_split").values())
    at.selectbox(key="train-model").set_value("resnet18_transfer").run()
    assert at.selectbox(key="train-freeze").options == list(config.choice_labels("freeze").values())


def test_model_picker_lists_transfer_models_with_pretrained_and_freeze():
    from cnnlab.models import list_models
    from cnnlab.models.pretrained import weights_status

    transfer = list_models(family="transfer")
    at = open_view("train")
    options = at.selectbox(key="train-model").options
    assert transfer and all(any(f" · {n} · " in o for o in options) for n in transfer)
    with pytest.raises(KeyError):
        at.checkbox(key="train-pretrained")  # only for transfer models
    at.selectbox(key="train-model").set_value("resnet18_transfer").run()
    assert not at.exception
    state, message = weights_status("resnet18")
    assert state != "present"  # tests have no network and an empty cache
    assert at.checkbox(key="train-pretrained").value is (state != "missing")
    assert any(message in c.value for c in [*at.caption, *at.warning])
    assert at.selectbox(key="train-freeze").disabled  # freezing needs the pretrained weights
    at.checkbox(key="train-pretrained").check().run()
    assert any(message in w.value for w in at.warning)
    assert not at.selectbox(key="train-freeze").disabled
    at.selectbox(key="train-freeze").set_value("features").run()
    if state == "missing":  # refused on the page, with the weights' own message
        at.button(key="train-start").click().run()
        assert at.error and message in at.error[0].value


def test_transfer_model_from_scratch_is_submitted():
    at = open_view("train")
    at.selectbox(key="train-model").set_value("resnet18_transfer").run()
    at.checkbox(key="train-pretrained").uncheck().run()
    config = start_and_cancel(at)
    assert config.model == "resnet18_transfer" and config.pretrained is False and config.freeze == "none"


def test_new_settings_reach_the_submitted_job():
    at = open_view("train")
    at.selectbox(key="train-opt").set_value("momentum").run()
    assert at.number_input(key="train-lr").value == 0.01  # the typical value follows the optimizer
    assert not at.number_input(key="train-momentum").disabled
    at.number_input(key="train-momentum").set_value(0.5).run()
    at.checkbox(key="train-nesterov").check().run()
    at.number_input(key="train-lr").set_value(0.05).run()
    at.number_input(key="train-batch").set_value(4).run()
    at.selectbox(key="train-init").set_value("xavier").run()
    at.selectbox(key="train-channels").set_value(3).run()
    at.text_input(key="train-size").input("32").run()
    at.number_input(key="train-valfrac").set_value(0.25).run()
    at.selectbox(key="train-sched").set_value("step").run()
    at.number_input(key="train-step").set_value(2).run()
    at.number_input(key="train-gamma").set_value(0.5).run()
    config = start_and_cancel(at)
    assert (config.optimizer, config.momentum, config.nesterov, config.lr) == ("momentum", 0.5, True, 0.05)
    assert (config.batch_size, config.init, config.in_channels, config.input_size) == (4, "xavier", 3, 32)
    assert (config.val_split, config.val_fraction) == ("holdout", 0.25)
    assert (config.scheduler, config.step_size, config.gamma) == ("step", 2, 0.5)


def test_batch_size_spans_1_to_4096():
    at = open_view("train")
    batch = at.number_input(key="train-batch")
    assert (batch.min, batch.max) == (1, 4096)
    batch.set_value(1024).run()
    assert start_and_cancel(at).batch_size == 1024


def test_learning_rate_has_no_upper_cap_in_the_widget():
    from cnnlab.errors import ConfigError
    from cnnlab.train import TrainConfig

    at = open_view("train")
    assert not at.number_input(key="train-lr").proto.has_max
    at.number_input(key="train-lr").set_value(100.0).run()
    assert at.number_input(key="train-lr").value == 100.0
    try:
        TrainConfig(lr=100.0).validate()
    except ConfigError as err:  # TrainConfig decides: its message, not a traceback
        at.button(key="train-start").click().run()
        assert not at.exception and at.error and str(err) in at.error[0].value
    else:
        assert start_and_cancel(at).lr == 100.0


def test_d2l_googlenet_at_96x96_is_submitted_with_input_size_96():
    at = open_view("train")
    at.selectbox(key="train-model").set_value("d2l_googlenet").run()
    assert any("designed for 96x96" in c.value for c in at.caption)  # its own size is shown
    at.selectbox(key="train-data").set_value("shapes").run()
    at.text_input(key="train-size").input("96").run()
    assert any("96x96" in w.value for w in at.warning)  # slow on a CPU: said before it starts
    config = start_and_cancel(at)
    assert config.model == "d2l_googlenet" and config.input_size == 96


def test_invalid_settings_show_trainconfigs_message():
    from cnnlab.errors import ConfigError
    from cnnlab.train import TrainConfig

    with pytest.raises(ConfigError) as bad:
        TrainConfig(input_size=5).validate()
    at = open_view("train")
    at.text_input(key="train-size").input("5").run()
    at.button(key="train-start").click().run()
    assert not at.exception
    assert at.error and str(bad.value) in at.error[0].value


def test_official_test_split_only_where_the_dataset_has_one():
    at = open_view("train")  # digits: no official test split
    at.radio(key="train-val").set_value("test").run()
    assert at.number_input(key="train-valfrac").disabled
    assert any("no official test split" in w.value for w in at.warning)
    at.button(key="train-start").click().run()
    assert not at.exception and at.error and "no official test split" in at.error[0].value


def test_bad_setting_gives_message():
    at = open_view("train")
    at.number_input(key="train-subset").set_value(5).run()  # fewer images than the 10 classes
    at.button(key="train-start").click().run()
    assert not at.exception
    assert at.error and "subset" in at.error[0].value
    assert "smaller than the 10 classes of digits" in at.error[0].value  # the registry's class count


def test_settings_survive_switching_page_and_back():
    at = open_view("train")
    at.selectbox(key="train-model").set_value("lenet5").run()
    at.selectbox(key="train-data").set_value("shapes").run()
    at.number_input(key="train-epochs").set_value(7).run()
    at.selectbox(key="train-opt").set_value("momentum").run()
    at.number_input(key="train-momentum").set_value(0.99).run()
    at.selectbox(key="train-init").set_value("kaiming").run()
    at.text_input(key="train-size").input("30x28").run()
    at.switch_page("views/architectures.py").run()
    assert not at.exception
    with pytest.raises(KeyError):
        at.selectbox(key="train-model")  # another page is shown
    at.switch_page("views/train.py").run()
    assert not at.exception
    assert at.selectbox(key="train-model").value == "lenet5"
    assert at.selectbox(key="train-data").value == "shapes"
    assert at.number_input(key="train-epochs").value == 7
    assert at.selectbox(key="train-opt").value == "momentum"
    assert at.number_input(key="train-momentum").value == 0.99
    assert at.selectbox(key="train-init").value == "kaiming"
    assert at.text_input(key="train-size").value == "30x28"
    config = start_and_cancel(at)
    assert (config.model, config.epochs, config.momentum, config.input_size) == ("lenet5", 7, 0.99, (30, 28))


def test_copy_settings_from_a_run_fills_the_form():
    from cnnlab.runs import list_runs
    from cnnlab.train import TrainConfig

    options = {"n_train": 80, "n_val": 16, "n_test": 16}
    source = TrainConfig(model="lenet5", dataset="shapes", epochs=4, batch_size=8, optimizer="momentum", lr=0.02,
                         momentum=0.5, nesterov=True, init="xavier", in_channels=3, input_size=32, seed=3,
                         val_split="test", data_options=options, max_steps=2, device="cpu")
    res = train_run(source)
    assert res.status == "finished", res.message
    run_id = list_runs()[0].run_id

    at = open_view("train")
    at.selectbox(key="train-copy-run").set_value(run_id).run()
    at.button(key="train-copy").click().run()
    assert not at.exception and not at.error
    assert at.selectbox(key="train-model").value == "lenet5"
    assert at.selectbox(key="train-data").value == "shapes"
    assert at.number_input(key="train-epochs").value == 4
    assert at.number_input(key="train-batch").value == 8
    assert at.selectbox(key="train-opt").value == "momentum"
    assert at.number_input(key="train-lr").value == 0.02
    assert at.number_input(key="train-momentum").value == 0.5
    assert at.checkbox(key="train-nesterov").value is True
    assert at.selectbox(key="train-init").value == "xavier"
    assert at.selectbox(key="train-channels").value == 3
    assert at.text_input(key="train-size").value == "32"
    assert at.radio(key="train-val").value == "test"  # shapes with n_test has an official test split
    assert any("max_steps=2" in c.value for c in at.caption)  # what the page cannot set is said
    config = start_and_cancel(at)
    for name in ("model", "dataset", "epochs", "batch_size", "optimizer", "lr", "momentum", "nesterov", "init",
                 "in_channels", "input_size", "seed", "val_split", "data_options"):
        assert getattr(config, name) == getattr(source, name), name
    assert config.max_steps is None

    at.button(key="train-reset").click().run()  # and back to the defaults
    assert at.selectbox(key="train-model").value == "lenet" and at.number_input(key="train-epochs").value == 3


def test_short_training_to_the_end_shows_curves_and_run():
    from cnnlab.jobs import get_manager
    from cnnlab.runs import list_runs

    at = open_view("train")
    at.number_input(key="train-epochs").set_value(2).run()
    at.button(key="train-start").click().run()
    assert not at.exception and not at.error
    manager = get_manager()
    job = manager.get(at.session_state["train-job"])
    assert job is not None
    assert job.wait(timeout=500), "training did not finish"  # a safety net: it ends in seconds
    at.run()
    assert not at.exception
    assert job.state == "finished", job.message
    assert any("Runs" in s.value for s in at.success)
    assert len(at.get("vega_lite_chart")) >= 2  # loss and accuracy curves
    assert any(r.run_id == job.run_id for r in list_runs())


def test_second_training_waits_in_queue_and_a_new_session_sees_both():
    from cnnlab.jobs import get_manager

    at = open_view("train")
    at.selectbox(key="train-data").set_value("shapes").run()
    at.number_input(key="train-epochs").set_value(200).run()  # far longer than this test: cancelled below
    at.button(key="train-start").click().run()
    assert not any("queue" in i.value for i in [*at.info, *at.toast])  # alone: no queue message
    first = get_manager().get(at.session_state["train-job"])
    at.button(key="train-start").click().run()
    assert any("waits in the queue" in t.value for t in at.toast)  # said once, not a box that stays
    second = get_manager().get(at.session_state["train-job"])
    assert second.id != first.id
    try:
        # a reloaded tab is a new session: the server-owned jobs are still listed
        other = open_view("train")
        options = other.selectbox(key="train-live-job").options
        assert any(f"#{first.id} " in o for o in options) and any(f"#{second.id} " in o for o in options)
    finally:
        second.cancel()
        first.cancel()
        assert first.wait(60) and second.wait(60)
    assert second.state == "cancelled" and first.state == "cancelled"


def test_start_from_a_run_sets_init_from():
    from cnnlab.jobs import get_manager
    from cnnlab.runs import list_runs
    from cnnlab.train import TrainConfig

    res = train_run(TrainConfig(model="cifar_convnet", dataset="shapes", max_steps=2, epochs=1,
                                data_options={"n_train": 64, "n_val": 16}))
    assert res.status == "finished", res.message
    run_id = list_runs()[0].run_id

    at = open_view("train")
    box = at.selectbox(key="train-init-from")
    assert box.value == "none" and any(o.endswith(f"· {run_id}") for o in box.options)  # runs with a checkpoint
    assert any("every layer whose shape fits is reused; the head for a new class count starts fresh" in c.value
               for c in at.caption)
    at.selectbox(key="train-init-from").set_value(run_id).run()
    assert any(f"Run {run_id} trained cifar_convnet, not lenet" in w.value for w in at.warning)  # another model
    at.selectbox(key="train-model").set_value("cifar_convnet").run()
    at.selectbox(key="train-data").set_value("shapes").run()
    assert not at.exception
    assert not any("are reused" in w.value for w in at.warning)  # the same model: no warning about layers
    assert at.selectbox(key="train-init").disabled  # the run's weights replace the initialisation
    config = start_and_cancel(at)
    assert get_manager().jobs()[-1].config.init_from == run_id == config.init_from
    assert config.init == "default"

    at.selectbox(key="train-init-from").set_value("none").run()  # back to a fresh start
    assert start_and_cancel(at).init_from is None


def make_own_dataset(root, per_class: int = 6) -> str:
    """A dataset of your own images (cnnlab.data.maker) under ``root``: three classes of generated shapes."""
    import io

    from PIL import Image

    from cnnlab.data import maker
    from cnnlab.data.shapes import generate_shapes

    images, labels = generate_shapes(8 * per_class, size=40, seed=2)
    maker.create_dataset("own", ["circle", "square", "triangle"])
    for c, name in enumerate(["circle", "square", "triangle"]):
        files = []
        for i in (labels == c).nonzero().flatten().tolist()[:per_class]:
            buf = io.BytesIO()
            Image.fromarray(images[i].permute(1, 2, 0).numpy()).save(buf, "PNG")
            files.append((f"{i}.png", buf.getvalue()))
        assert len(maker.add_images("own", name, files).saved) == per_class
    return "own"


def test_your_images_get_small_data_settings_the_holdout_and_a_transfer_choice(tmp_path, monkeypatch):
    from cnnlab.models.pretrained import weights_path

    monkeypatch.setenv("CNNLAB_DATA", str(tmp_path / "data"))
    name = make_own_dataset(tmp_path / "data")
    at = open_view("train")
    assert f"{name} — your images" in at.selectbox(key="train-data").options
    at.selectbox(key="train-data").set_value(name).run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert at.selectbox(key="train-model").value == "cifar_resnet"
    assert at.text_input(key="train-size").value == "32" and at.selectbox(key="train-aug").value == "cifar"
    assert at.selectbox(key="train-made-size").value == 32
    assert any("Settings for a small image folder applied" in m.value for m in at.markdown)
    from cnnlab.data import maker

    split = maker.holdout_counts(maker.read_made(name), 0.2, 0)  # the loader's split, shown as it is
    holdout = [c.value for c in at.caption if c.value.startswith("Hold-out")]
    assert holdout and f"{sum(v for _, v in split)} validation images" in holdout[0]
    assert f"circle {split[0][0]}/{split[0][1]}" in holdout[0]
    assert any("no ImageNet weights on this machine" in c.value for c in at.caption)
    at.number_input(key="train-valfrac").set_value(0.5).run()  # the split shown follows the setting
    n_val = sum(v for _, v in maker.holdout_counts(maker.read_made(name), 0.5, 0))
    assert any(c.value.startswith(f"Hold-out: about 50% of every class (seed 0), {n_val} validation") for c in at.caption)
    at.number_input(key="train-seed").set_value(5).run()  # and the seed
    n_val = sum(v for _, v in maker.holdout_counts(maker.read_made(name), 0.5, 5))
    assert any(c.value.startswith(f"Hold-out: about 50% of every class (seed 5), {n_val} validation") for c in at.caption)

    path = weights_path("resnet18")  # weights "present": the transfer-learning choice is offered
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"stand-in: never loaded by this test")
    at.run()
    at.button(key="train-suggest-transfer").click().run()
    assert not at.exception
    assert at.selectbox(key="train-model").value == "resnet18_transfer"
    assert at.checkbox(key="train-pretrained").value and at.selectbox(key="train-freeze").value == "features"
    assert at.selectbox(key="train-made-size").value == 224
    at.button(key="train-suggest").click().run()  # back to the small CNN
    assert at.selectbox(key="train-model").value == "cifar_resnet"
    config = start_and_cancel(at)
    assert config.dataset == name and config.data_options == {"image_size": 32} and config.augment == "cifar"
