"""TrainConfig's settings: each rule written once (bounds, choices and their labels, help, the
kinds of value config.json may hold), and what the Train page asks the dataset registry."""

from __future__ import annotations

from dataclasses import fields

import pytest

from cnnlab import config
from cnnlab.config import KINDS, TrainConfig, check_subset
from cnnlab.errors import ConfigError


def test_messages_write_whole_numbers_whole_and_other_numbers_short():
    with pytest.raises(ConfigError) as seed:
        TrainConfig(seed=-1).validate()
    assert str(seed.value) == "seed must be between 0 and 2147483647, got -1."
    with pytest.raises(ConfigError) as subset:
        TrainConfig(subset=0).validate()
    assert str(subset.value) == "subset must be between 1 and 100000000, got 0."
    with pytest.raises(ConfigError) as lr:
        TrainConfig(lr=2e6).validate()
    assert str(lr.value).startswith("learning rate must be > 0 and <= 1e+06, got 2e+06 (typical:")


def test_the_seed_takes_0_to_2_to_the_31_minus_1():
    assert config.bounds("seed") == (0, 2**31 - 1)
    assert TrainConfig(seed=2**31 - 1).validate().seed == 2**31 - 1
    with pytest.raises(ConfigError, match="between 0 and 2147483647"):
        TrainConfig(seed=2**31).validate()
    assert "2147483647" in config.help_text("seed")  # the help says the range


def test_accessors_read_the_settings():
    assert config.bounds("epochs") == (1, 1000) and all(type(v) is int for v in config.bounds("epochs"))
    assert config.bounds("momentum") == (0.0, 0.999) and all(type(v) is float for v in config.bounds("momentum"))
    assert config.choices("optimizer") == config.OPTIMIZERS == ("sgd", "momentum", "adam", "adamw")
    assert config.choice_labels("optimizer")["momentum"] == "SGD + momentum"
    assert config.choice_labels("val_split") == {"holdout": "Hold-out of the training set",
                                                 "test": "The official test split"}
    assert config.label("val_fraction") == "val_fraction" and config.label("max_steps") == "max steps"
    assert config.kinds("input_size") == ("whole", "size", "null") and config.kinds("nesterov") == ("bool",)
    for name, wrong in (("nope", config.help_text), ("optimizer", config.bounds), ("seed", config.choices)):
        with pytest.raises(KeyError):
            wrong(name)


def test_every_choice_has_a_label_and_every_setting_known_kinds():
    for f in fields(TrainConfig):
        assert f.metadata["accepts"] and set(f.metadata["accepts"]) <= set(KINDS), f.name
        rule = f.metadata["rule"]
        if rule is not None and rule.kind == "choice":
            labels = config.choice_labels(f.name)
            assert list(labels) == list(rule.choices) and all(labels.values()), f.name
            assert f.default in rule.choices, f.name


@pytest.mark.parametrize("settings, message", [
    ({"seed": "0"}, "setting 'seed' should be a whole number, got '0'."),
    ({"lr": [0.1]}, "setting 'lr' should be a number, got [0.1]."),
    ({"subset": 1.5}, "setting 'subset' should be a whole number or null, got 1.5."),
    ({"input_size": "32x28"}, "setting 'input_size' should be a whole number or two whole numbers or null, got '32x28'."),
    ({"data_root": 3}, "setting 'data_root' should be text or null, got 3."),
    ({"data_options": ["x"]}, "setting 'data_options' should be an object, got ['x']."),
    ({"nesterov": 1}, "setting 'nesterov' should be true or false, got 1."),
    ({"model": list(range(40))}, "setting 'model' should be text, got " + repr(list(range(40)))[:57] + "...."),
])
def test_from_dict_names_the_setting_and_what_it_takes(settings, message):
    with pytest.raises(ConfigError) as err:
        TrainConfig.from_dict(settings)
    assert str(err.value) == message


def test_from_dict_reads_what_json_gives_back():
    c = TrainConfig.from_dict({"input_size": [32, 28], "lr": 1, "subset": None, "data_options": {"n_train": 8},
                               "unknown": "ignored"})
    assert (c.input_size, c.lr, c.subset, c.data_options) == ((32, 28), 1, None, {"n_train": 8})
    with pytest.raises(ConfigError, match="JSON object of settings"):
        TrainConfig.from_dict(["lenet"])


def test_every_bool_setting_must_be_true_or_false():
    for name in ("nesterov", "pretrained", "sync_bn"):
        with pytest.raises(ConfigError, match=f"{name} must be true or false"):
            TrainConfig(**{name: 1}).validate()


def test_a_subset_needs_one_image_per_class():
    check_subset(None, 10)
    check_subset(10, 10)
    check_subset(5, None)
    with pytest.raises(ConfigError) as err:
        check_subset(5, 10, "digits")
    assert str(err.value).startswith("subset=5 is smaller than the 10 classes of digits: a stratified subset needs "
                                     "at least one image per class; ask for at least 10 images")
    with pytest.raises(ConfigError, match="the 10 classes: a stratified"):  # validate uses the same rule
        TrainConfig(subset=5, num_classes=10).validate()


def test_the_registry_says_test_splits_and_class_counts_without_loading(tmp_path):
    from cnnlab.data import class_count, has_test_split

    assert not has_test_split("digits") and not has_test_split("shapes") and not has_test_split("no-such-set")
    assert has_test_split("shapes", options={"n_test": 16}) and has_test_split("cifar10")
    assert has_test_split("caltech101")
    assert not has_test_split("folder") and not has_test_split("folder", tmp_path)
    (tmp_path / "test").mkdir()
    assert has_test_split("folder", tmp_path)
    assert (class_count("digits"), class_count("shapes"), class_count("cifar100")) == (10, 8, 100)
    assert class_count("shapes", options={"classes": ["circle", "square", "triangle"]}) == 3
    assert class_count("folder") is None and class_count("no-such-set") is None
    assert class_count("shapes", options={"classes": ["circle"]}) is None  # a bad option: loading says why
