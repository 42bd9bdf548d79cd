"""Honest conclusions: written from the measured numbers, saying so when the lecture's expected
arm loses, when the arms are too close to call, and when an arm diverged or failed.

Tests marked "Regression" keep fixed the defects found while writing them.
"""

from __future__ import annotations

import re

import pytest

from cnnlab.lessons import builtin_names, conclude, get_lesson, parse_lesson, render
from cnnlab.lessons.conclude import (METRICS, Points, _names, effect, example_arms, fit_phrase, noise_margin,
                                    ranking_text, tiers)

# The divergence message the trainer writes (cnnlab.train.DivergenceGuard): the lesson quotes what
# happened and leaves out the advice meant for a user's own runs.
NAN_MESSAGE = ("diverged: the loss became NaN at step 3 (epoch 1); training stopped there. Try a lower learning "
               "rate (now 10; e.g. 1), the adam optimizer or a model with batch normalisation.")


def arm(arm_id, name, value=None, status="finished", val_images=1000, message="", **more):
    return {"id": arm_id, "name": name, "status": status, "message": message, "best_val_top1": value,
            "val_images": val_images, "epochs": 4, "params": 44_256, "epoch_seconds": 2.0, **more}


@pytest.fixture(scope="module")
def lenet():
    return get_lesson("lenet-vs-lenetv2")


def lenet_arms(lenet_value, v2_value, v2_status="finished", v2_message=""):
    return [arm("lenet", "LeNet (tanh, average pooling)", lenet_value),
            arm("lenet_v2", "LeNetV2 (ReLU, max pooling)", v2_value, v2_status, message=v2_message)]


# ---- the built-in LeNet lesson ----------------------------------------------------------------------


def test_expected_winner_wins_clearly(lenet):
    text = conclude(lenet, lenet_arms(0.60, 0.95))
    assert "ReLU does not saturate" in text  # the lesson's "expected" sentence
    assert "95.0%" in text and "60.0%" in text and "35.0 points" in text  # both values and the lead, in points
    assert "35.0%" not in text
    assert "LeNetV2 (ReLU, max pooling) reached 95.0%" in text


def test_expected_winner_loses_clearly_and_the_conclusion_says_so(lenet):
    """The issue's "honest" test: LeNetV2 is expected first; on this run LeNet wins by far."""
    text = conclude(lenet, lenet_arms(0.80, 0.60))
    assert "ReLU does not saturate" not in text
    assert "learns faster" not in text
    assert text.startswith("LeNet (tanh, average pooling) (80.0%) did better than LeNetV2 (ReLU, max pooling) "
                           "(60.0%), by more than the noise")  # what this run measured comes first
    assert "In lecture 002 LeNetV2 converges first" in text  # then the lesson's own "unexpected" explanation


def test_a_difference_within_the_noise_is_too_close_to_call(lenet):
    margin = noise_margin(arm("a", "A", 0.705), arm("b", "B", 0.700), "best_val_top1", None)
    assert 0.005 < margin  # 1000 validation images: half a point is noise
    for values in ((0.705, 0.700), (0.700, 0.705)):  # the expected arm narrowly behind, then ahead
        text = conclude(lenet, lenet_arms(*values))
        assert "cannot be told apart" in text, text
        assert "did not make a difference beyond the noise" in text  # the lesson's own "close" sentence
        assert "ReLU does not saturate" not in text
        assert "70.5%" in text and "70.0%" in text
        assert f"±{100 * margin:.1f} points" in text


def test_the_same_difference_on_a_large_validation_set_is_not_noise(lenet):
    arms = lenet_arms(0.700, 0.720)
    for a in arms:
        a["val_images"] = 100_000
    assert "ReLU does not saturate" in conclude(lenet, arms)
    for a in arms:
        a["val_images"] = 200
    assert "cannot be told apart" in conclude(lenet, arms)


def test_expected_arm_diverged_with_two_arms_cannot_answer(lenet):
    text = conclude(lenet, lenet_arms(0.80, None, "diverged", NAN_MESSAGE))
    assert "Only LeNet (tanh, average pooling) finished" in text and "cannot answer" in text
    assert "ReLU does not saturate" not in text
    assert ("LeNetV2 (ReLU, max pooling) diverged: the loss became NaN at step 3 (epoch 1); training stopped "
            "there.") in text
    assert "Try a lower learning rate" not in text


def test_no_arm_finished(lenet):
    text = conclude(lenet, [arm("lenet", "LeNet (tanh, average pooling)", None, "failed", message="out of memory"),
                            arm("lenet_v2", "LeNetV2 (ReLU, max pooling)", None, "cancelled")])
    assert text.startswith("No arm finished, so this run cannot answer the question")
    assert "cannot answer" in text
    assert "out of memory" in text and "cancelled" in text


def test_a_finished_arm_without_the_metric_is_not_ranked(lenet):
    arms = lenet_arms(0.8, 0.9)
    arms[1]["best_val_top1"] = None  # e.g. stopped before its first validation
    assert "cannot answer" in conclude(lenet, arms)


def _tiers_of(lesson):
    """The lesson's expected order as tiers of arm ids (the first compared arm first when it expects none)."""
    c = lesson.conclusion
    compared = [a.id for a in lesson.arms if a.compare]
    if c.expect_order:
        return [list(t) for t in c.expect_order]
    top = c.expect or compared[0]
    return [[top], [i for i in compared if i != top]]


def _synthetic(lesson, values, classes=4, val_images=100_000, seconds=None):
    """Example arms with ``values`` of the lesson's metric (and of best_val_top1), 4 classes."""
    c = lesson.conclusion
    arms = example_arms(lesson)
    for a in arms:
        v = values.get(a["id"], 0.6)
        a.update(val_images=val_images, num_classes=classes, best_val_top1=v, final_val_top1=v,
                 final_train_top1=min(1.0, v + 0.05), gap=0.05)
        if c.metric != "best_val_top1":
            a[c.metric] = values.get(a["id"], 0.6) if c.metric != "gap" else 1 - values.get(a["id"], 0.6)
        if seconds is not None:
            a["train_epoch_seconds"] = seconds.get(a["id"], 2.0)
    return arms


def _expected_seconds(lesson):
    """Per-arm training seconds that satisfy the lesson's `also` conclusions on time (expected arm fastest)."""
    out = {}
    for extra in lesson.conclusion.also:
        if extra.metric == "train_epoch_seconds" and extra.expect:
            out = {a.id: (1.0 if a.id == extra.expect else 3.0) for a in lesson.arms}
    return out or None


# Differences of accuracies are points, never percent: "12.5% above", "±3.1%" must not appear.
_PERCENT_DIFFERENCE = re.compile(r"\d%\s+(?:above|ahead|behind|below|more|less)|±\s*\d+(?:\.\d+)?%|gap of -?\d+(?:\.\d+)?%")


@pytest.mark.parametrize("name", builtin_names())
def test_every_builtin_lesson_concludes_honestly(name):
    """For each built-in lesson, on synthetic results: its expected sentence (and an effect shown) when the
    expected order comes out by far; never that sentence when it is reversed, tied, or when an arm it
    needs stays at chance; and no difference of accuracies written as a percentage."""
    lesson = get_lesson(name)
    c = lesson.conclusion
    tiers = _tiers_of(lesson)
    seconds = _expected_seconds(lesson)
    levels = [0.95 - 0.3 * i for i in range(len(tiers))]

    as_expected = {i: levels[k] for k, t in enumerate(tiers) for i in t}
    arms = _synthetic(lesson, as_expected, seconds=seconds)
    text = conclude(lesson, arms, "quick")
    names = _names(lesson, arms, "quick")
    assert render(c.expected, names) in text
    assert effect(lesson, arms)["shown"], effect(lesson, arms)
    assert not _PERCENT_DIFFERENCE.search(text), text

    reversed_ = {i: levels[-1 - k] for k, t in enumerate(tiers) for i in t}
    arms = _synthetic(lesson, reversed_, seconds=seconds)
    text = conclude(lesson, arms, "quick")
    if c.expect or c.expect_order:
        assert render(c.expected, _names(lesson, arms, "quick")) not in text
        assert "did better than" in text
        assert not effect(lesson, arms)["shown"]
    assert not _PERCENT_DIFFERENCE.search(text), text

    tied = _synthetic(lesson, {a.id: 0.70 for a in lesson.arms}, val_images=300, seconds=seconds)
    text = conclude(lesson, tied, "quick")
    if c.expect or c.expect_order:
        assert render(c.expected, _names(lesson, tied, "quick")) not in text
        assert "cannot be told apart" in text
        assert not effect(lesson, tied)["shown"]
    else:
        assert "came first" not in text.split(".")[0] or "too close" in text
    assert not _PERCENT_DIFFERENCE.search(text), text

    top = tiers[0][0]
    at_chance = dict(as_expected)
    at_chance[top] = 0.25  # 4 classes: guessing
    arms = _synthetic(lesson, at_chance, val_images=1000, seconds=seconds)
    if c.metric == "gap":
        arms = [dict(a, gap=0.0) if a["id"] == top else a for a in arms]
    text = conclude(lesson, arms, "quick")
    top_name = lesson.arm(top).name
    assert f"{top_name} (25.0%) did not learn" in text or f"{top_name} (25.0%) and" in text or \
        f"and {top_name} (25.0%) did not learn" in text, text
    if c.expect or c.expect_order:  # a lesson without an expectation states the order of the arms that learnt
        assert render(c.expected, _names(lesson, arms, "quick")) not in text
    assert f"{top_name} came first" not in text and f"{top_name} (25.0%), then" not in text
    assert not effect(lesson, arms)["shown"]


@pytest.mark.parametrize("name", builtin_names())
def test_every_builtin_lesson_concludes_when_arms_diverge_or_fail(name):
    """A diverged or failed arm never breaks a built-in lesson's conclusion (whatever its templates use)."""
    lesson = get_lesson(name)
    for statuses in (["diverged"] + ["finished"] * (len(lesson.arms) - 1),
                     ["finished"] * (len(lesson.arms) - 1) + ["failed"],
                     ["diverged"] * len(lesson.arms)):
        arms = example_arms(lesson)
        for a, status in zip(arms, statuses):
            if status != "finished":
                a.update(status=status, message=NAN_MESSAGE if status == "diverged" else "broken",
                         best_val_top1=None, final_val_top1=None, test_top1=None)
        text = conclude(lesson, arms, "quick")
        assert text.strip()
        for a in arms:
            if a["status"] != "finished":
                assert a["name"] in text


# ---- a lesson with three arms and its own templates ---------------------------------------------------

THREE = '''\
title = "Learning rates"
seed = ["000", "003"]
question = "What does the learning rate do?"
[base]
dataset = "digits"
optimizer = "sgd"
[budget.quick]
epochs = 2
[budget.full]
dataset = "mnist"
[[arms]]
id = "small"
name = "Too small"
lr = 0.0001
[[arms]]
id = "good"
name = "Good"
lr = 0.05
[[arms]]
id = "large"
name = "Too large"
lr = 10.0
[conclusion]
expect = "good"
expected = "{best.name} came first with {best.best_val_top1:.1%}, {gap:.1%} above {worst.name}."
'''


@pytest.fixture(scope="module")
def three():
    return parse_lesson(THREE, "three")


def test_expected_arm_diverged_concludes_from_the_others(three):
    arms = [arm("small", "Too small", 0.40), arm("good", "Good", None, "diverged", message=NAN_MESSAGE),
            arm("large", "Too large", 0.70)]
    text = conclude(three, arms)
    assert "Good, the arm the lecture expects to come first, did not finish (diverged)" in text
    assert "among the others Too large came first (best validation top-1 70.0%)" in text
    assert "Good diverged: the loss became NaN at step 3 (epoch 1); training stopped there." in text
    assert "Try a lower learning rate" not in text
    assert "came first with" not in text  # not the "expected" sentence


def test_a_diverged_arm_is_reported_and_the_others_conclude(three):
    arms = [arm("small", "Too small", 0.40), arm("good", "Good", 0.90),
            arm("large", "Too large", None, "diverged", message=NAN_MESSAGE)]
    text = conclude(three, arms)
    assert text.startswith("Good came first with 90.0%, 50.0 points above Too small.")
    assert "Too large diverged: the loss became NaN at step 3 (epoch 1); training stopped there." in text
    assert "Try a lower learning rate" not in text


def test_a_failed_arm_is_reported_with_its_message(three):
    arms = [arm("small", "Too small", 0.40), arm("good", "Good", 0.90),
            arm("large", "Too large", None, "failed", message="training failed at step 2: RuntimeError: boom")]
    text = conclude(three, arms)
    assert "Good came first with 90.0%" in text
    assert "Too large failed: training failed at step 2: RuntimeError: boom" in text
    skipped = [arm("small", "Too small", 0.40), arm("good", "Good", 0.90),
               arm("large", "Too large", None, "skipped", message="it starts from the weights of X, which diverged.")]
    assert "Too large skipped: it starts from the weights of X, which diverged." in conclude(three, skipped)


def test_the_lessons_own_diverged_and_always_sentences(three):
    lesson = parse_lesson(THREE + 'diverged = "{arm.name} blew up ({arm.status})."\n'
                          'always = "The fastest was {fastest.name}."\n', "three")
    arms = [arm("small", "Too small", 0.40, epoch_seconds=3.0), arm("good", "Good", 0.90, epoch_seconds=1.0),
            arm("large", "Too large", None, "diverged", message=NAN_MESSAGE)]
    text = conclude(lesson, arms)
    assert "Too large blew up (diverged)." in text
    assert "NaN" not in text  # the lesson's own sentence replaces the default
    assert text.endswith("The fastest was Good.")


def test_the_lessons_own_unexpected_sentence(three):
    lesson = parse_lesson(THREE + 'unexpected = "Surprise: {best.name} beat {expected.name}."\n', "three")
    arms = [arm("small", "Too small", 0.95), arm("good", "Good", 0.50), arm("large", "Too large", 0.40)]
    text = conclude(lesson, arms)
    assert text.startswith("Too small (95.0%) did better than Good (50.0%), by more than the noise")
    assert "Surprise: Too small beat Good." in text  # the lesson's explanation follows the facts
    assert "came first with" not in text


def test_no_expected_arm_close_and_clear(three):
    lesson = parse_lesson(THREE.replace('expect = "good"\n', ""), "three")
    clear = [arm("small", "Too small", 0.40), arm("good", "Good", 0.90), arm("large", "Too large", 0.50)]
    assert conclude(lesson, clear).startswith("Good came first with 90.0%, 50.0 points above Too small.")
    close = [arm("small", "Too small", 0.40), arm("good", "Good", 0.901), arm("large", "Too large", 0.900)]
    text = conclude(lesson, close)
    assert "too close to call" in text and "came first with" not in text


def test_a_diverged_template_naming_a_role_still_concludes_when_every_arm_diverged():
    """Regression (a defect found while writing these tests, now fixed): a lesson's `diverged` template may name roles such as {best.name}; the templates are
    checked at parse time with every arm finished only. When every arm diverges, `conclude` raises
    TemplateError ("unknown name {best.name}"), and the lesson runner (runner.py, `_coordinate`)
    then marks the whole lesson "failed" and saves no result, losing the measured arms. `conclude`
    should fall back to its default sentence when a template cannot be filled (or check_templates
    should also try the templates with some arms diverged)."""
    lesson = parse_lesson(THREE + 'diverged = "{arm.name} diverged while {best.name} did not."\n', "three")
    arms = [arm(i, n, None, "diverged", message=NAN_MESSAGE)
            for i, n in (("small", "Too small"), ("good", "Good"), ("large", "Too large"))]
    text = conclude(lesson, arms)
    assert "cannot answer" in text
    assert all(n in text for n in ("Too small", "Good", "Too large"))


def test_lower_is_better_metric():
    lesson = parse_lesson(THREE.replace('expect = "good"', 'metric = "epoch_seconds"\nexpect = "good"\ntie = 0.5')
                          .replace("{best.best_val_top1:.1%}, {gap:.1%}", "{best.epoch_seconds:.1f} s, {gap:.1f} s"),
                          "three")
    assert lesson.conclusion.higher_is_better is False
    fast_good = [arm("small", "Too small", 0.5, epoch_seconds=9.0), arm("good", "Good", 0.5, epoch_seconds=2.0),
                 arm("large", "Too large", 0.5, epoch_seconds=5.0)]
    assert conclude(lesson, fast_good).startswith("Good came first with 2.0 s, 7.0 s above Too small.")  # seconds stay seconds
    slow_good = [arm("small", "Too small", 0.5, epoch_seconds=1.0), arm("good", "Good", 0.5, epoch_seconds=9.0),
                 arm("large", "Too large", 0.5, epoch_seconds=5.0)]
    text = conclude(lesson, slow_good)
    assert "came first with" not in text and "Too small (1.00) did better than Good (9.00)" in text
    within_tie = [arm("small", "Too small", 0.5, epoch_seconds=2.2), arm("good", "Good", 0.5, epoch_seconds=2.0),
                  arm("large", "Too large", 0.5, epoch_seconds=5.0)]
    assert "cannot be told apart" in conclude(lesson, within_tie)  # durations: the tie is a share (50%) here


# ---- the noise margin -------------------------------------------------------------------------------------


def test_noise_margin_shrinks_with_more_validation_images():
    def margin(n, p=0.7, q=0.65):
        return noise_margin({"best_val_top1": p, "val_images": n}, {"best_val_top1": q, "val_images": n},
                            "best_val_top1", None)

    margins = [margin(n) for n in (100, 1000, 10_000, 100_000)]
    assert margins == sorted(margins, reverse=True) and len(set(margins)) == 4
    assert margins[0] > 0.1 and margins[-1] < 0.01
    assert margin(1000) == pytest.approx(1.96 * ((0.7 * 0.3 + 0.65 * 0.35) / 1000) ** 0.5)


def test_noise_margin_is_positive_at_zero_and_full_accuracy():
    for p, q in ((1.0, 1.0), (0.0, 0.0), (1.0, 0.0)):
        m = noise_margin({"best_val_top1": p, "val_images": 500}, {"best_val_top1": q, "val_images": 500},
                         "best_val_top1", None)
        assert 0 < m < 0.2


def test_noise_margin_without_a_count_or_for_other_metrics_is_the_tie():
    a, b = {"best_val_top1": 0.7}, {"best_val_top1": 0.6}
    assert noise_margin(a, b, "best_val_top1", None) == 0.0
    assert noise_margin(a, b, "best_val_top1", 0.02) == 0.02
    assert noise_margin({"seconds": 3.0}, {"seconds": 4.0}, "seconds", 0.5) == 2.0  # durations: a share of the larger
    assert noise_margin({"seconds": 3.0}, {"seconds": 4.0}, "seconds", None) == pytest.approx(0.4)  # default 10%
    assert noise_margin({"params": 3}, {"params": 4}, "params", None) == 0.0
    # the tie is a floor for accuracies too
    big = {"best_val_top1": 0.7, "val_images": 1_000_000}
    assert noise_margin(big, big, "best_val_top1", 0.05) == 0.05
    assert all(isinstance(m.higher_is_better, bool) for m in METRICS.values())


# ---- points, chance, ties in an order of three or more, what the accuracies say ----------------------------


def test_differences_of_accuracies_print_as_points():
    assert format(Points(0.382), ".1%") == "38.2 points"
    assert format(Points(-0.05), "+.1%") == "-5.0 points"
    assert format(Points(0.01), ".0%") == "1 point"
    assert format(Points(0.25), ".2f") == "0.25"  # other formats unchanged


def _ranked(values, n=1000):
    arms = [{"id": k, "name": k.upper(), "value": v, "best_val_top1": v, "val_images": n} for k, v in values.items()]
    return sorted(arms, key=lambda a: a["value"], reverse=True)


def test_an_order_of_three_is_stated_only_where_each_step_is_beyond_the_noise():
    m = METRICS["best_val_top1"]
    clear = tiers(_ranked({"a": 0.90, "b": 0.70, "c": 0.40}), "best_val_top1", True, None)
    assert [[x["id"] for x in g] for g in clear] == [["a"], ["b"], ["c"]]
    assert ranking_text(clear, m) == "A (90.0%); then B (70.0%); then C (40.0%)"
    # b is within the noise of a and of c (1000 images: about ±4 points): no order among them
    chain = tiers(_ranked({"a": 0.70, "b": 0.67, "c": 0.64, "d": 0.20}), "best_val_top1", True, None)
    assert [[x["id"] for x in g] for g in chain] == [["a", "b", "c"], ["d"]]
    assert ranking_text(chain, m) == "A (70.0%), B (67.0%) and C (64.0%), too close to order; then D (20.0%)"
    two = tiers(_ranked({"a": 0.70, "b": 0.69}), "best_val_top1", True, None)
    assert ranking_text(two, m) == "A (70.0%) and B (69.0%), too close to tell apart"


def test_an_arm_at_chance_did_not_learn_and_is_never_ranked():
    lesson = parse_lesson(THREE.replace('expect = "good"\n', ""), "three")
    arms = [arm("small", "Too small", 0.26, num_classes=4), arm("good", "Good", 0.90, num_classes=4),
            arm("large", "Too large", 0.24, num_classes=4)]
    text = conclude(lesson, arms)
    assert "Too small (26.0%) and Too large (24.0%) did not learn" in text
    assert "(25.0% for 4 classes)" in text
    assert "came last" not in text and "worst" not in text
    # the only learnt arm is not ranked against arms that did not learn
    assert text.startswith("Good was the only arm that learnt (best validation top-1 90.0%).")
    # with 100 validation images 33% is still within the noise of guessing among 4 (±8.5 points)
    assert "did not learn" in conclude(lesson, [arm("small", "Too small", 0.33, val_images=100, num_classes=4),
                                               arm("good", "Good", 0.9, val_images=100, num_classes=4),
                                               arm("large", "Too large", 0.8, val_images=100, num_classes=4)])


def test_without_a_class_count_nothing_is_said_about_chance():
    """Results saved before the class count was recorded: no claim about learning at all."""
    lesson = parse_lesson(THREE, "three")
    text = conclude(lesson, [arm("small", "Too small", 0.10), arm("good", "Good", 0.90), arm("large", "Too large", 0.5)])
    assert "did not learn" not in text and "Good came first with 90.0%" in text


def test_what_the_training_accuracy_says():
    def phrase(train, val, n=1000):
        return fit_phrase({"final_train_top1": train, "final_val_top1": val, "best_val_top1": val,
                           "val_images": n, "num_classes": 8})
    assert phrase(1.0, 0.6).startswith("memorised its training images (training 100.0%, validation 60.0%)")
    assert phrase(0.62, 0.44).startswith("underfits")
    assert "worse still on new" in phrase(0.62, 0.44)
    assert phrase(0.60, 0.59).startswith("underfits: it does not fit even its training images")
    assert phrase(0.97, 0.96).startswith("generalises")
    assert phrase(0.93, 0.80).startswith("overfits")
    assert phrase(0.13, 0.12).startswith("did not learn")


ORDER = THREE.replace('expect = "good"', 'expect_order = [["good", "large"], ["small"]]\nlearn = ["good"]').replace(
    'expected = "{best.name} came first with {best.best_val_top1:.1%}, {gap:.1%} above {worst.name}."',
    'expected = "Good and Too large beat Too small: {ranking}."\nclose = "Run it longer."\n'
    'unexpected = "Look at the curves."')


def test_an_expected_order_of_tiers():
    lesson = parse_lesson(ORDER, "order")
    ok = [arm("small", "Too small", 0.30, num_classes=4), arm("good", "Good", 0.80, num_classes=4),
          arm("large", "Too large", 0.82, num_classes=4)]
    text = conclude(lesson, ok)
    assert text.startswith("Good and Too large beat Too small: Too large (82.0%) and Good (80.0%), too close to tell "
                           "apart; then Too small (30.0%).")
    assert effect(lesson, ok) == {"shown": True, "why": []}
    one_short = [arm("small", "Too small", 0.70, num_classes=4), arm("good", "Good", 0.80, num_classes=4),
                 arm("large", "Too large", 0.72, num_classes=4)]
    text = conclude(lesson, one_short)
    assert "Too large (72.0%) and Too small (70.0%) cannot be told apart" in text
    assert "beat Too small" not in text and "Run it longer." in text
    shown = effect(lesson, one_short)
    assert not shown["shown"] and any("cannot be told apart" in w for w in shown["why"])
    wrong = [arm("small", "Too small", 0.95, num_classes=4), arm("good", "Good", 0.60, num_classes=4),
             arm("large", "Too large", 0.62, num_classes=4)]
    assert conclude(lesson, wrong).startswith("Too small (95.0%) did better than Good (60.0%)")


def test_an_expected_arm_that_learnt_beats_one_that_did_not():
    """The learning-rate lesson: lr 0.001 stays at chance, lr 0.1 learns, lr 10 diverges: the effect is shown."""
    lesson = get_lesson("learning-rate")
    arms = [arm("small", "lr 0.001 (too small)", 0.117, val_images=359, num_classes=10, lr=0.001),
            arm("good", "lr 0.1 (about right)", 0.964, val_images=359, num_classes=10, lr=0.1),
            arm("large", "lr 10 (too large)", None, "diverged", message=NAN_MESSAGE)]
    text = conclude(lesson, arms)
    assert text.startswith("With lr 0.1 the network reached 96.4%")
    assert "lr 0.001 (too small) (11.7%) did not learn" in text
    assert effect(lesson, arms)["shown"]


def test_an_arm_the_lesson_needs_must_learn_for_the_effect():
    lesson = parse_lesson(ORDER.replace('learn = ["good"]', 'learn = "all"'), "order")
    arms = [arm("small", "Too small", 0.25, num_classes=4), arm("good", "Good", 0.80, num_classes=4),
            arm("large", "Too large", 0.82, num_classes=4)]
    found = effect(lesson, arms)
    assert not found["shown"] and "Too small did not learn." in found["why"]


@pytest.mark.parametrize("bad, message", [
    ('expect_order = [["good"]]', "at least two tiers"),
    ('expect_order = [["good"], ["nope"]]', "not a compared arm"),
    ('expect_order = [["good"], ["good"]]', "two tiers"),
    ('expect_order = "good"', "list of tiers"),
    ('expect = "good"\nexpect_order = [["good"], ["small"]]', "not both"),
    ('learn = ["nope"]', "compared arm ids"),
])
def test_bad_expected_orders_are_refused_with_the_key(bad, message):
    from cnnlab.errors import LessonError

    text = THREE.replace('expect = "good"', bad)
    with pytest.raises(LessonError, match=message):
        parse_lesson(text, "bad")


def test_a_second_question_about_time_with_its_own_noise():
    lesson = parse_lesson(THREE + '''
[[conclusion.also]]
metric = "train_epoch_seconds"
expect = "good"
tie = 0.2
expected = "Good trained {ratio:.1f} times faster."
close = "About the same time."
''', "timed")
    fast = [arm("small", "Too small", 0.4, train_epoch_seconds=3.0), arm("good", "Good", 0.9, train_epoch_seconds=1.0),
            arm("large", "Too large", 0.5, train_epoch_seconds=2.0)]
    assert conclude(lesson, fast).endswith("Good trained 2.0 times faster.")
    assert effect(lesson, fast)["shown"]
    same = [arm("small", "Too small", 0.4, train_epoch_seconds=1.1), arm("good", "Good", 0.9, train_epoch_seconds=1.0),
            arm("large", "Too large", 0.5, train_epoch_seconds=1.15)]
    text = conclude(lesson, same)
    assert "cannot be told apart" in text and "About the same time." in text
    assert not effect(lesson, same)["shown"]


# ---- the same conclusions in Italian and Chinese (issue 28) ----------------------------------------


@pytest.mark.parametrize("code,lead,value", [("it", "35,0 punti percentuali", "95,0 %"), ("zh", "35.0 个百分点", "95.0%")])
def test_a_clear_win_reads_in_the_language_with_its_numbers(lenet, speak, code, lead, value):
    from cnnlab import i18n

    speak(code)
    text = conclude(lenet, lenet_arms(0.60, 0.95))
    assert value in text and lead in text
    assert lenet.tr("LeNetV2 (ReLU, max pooling)") in text != "LeNetV2 (ReLU, max pooling)"
    assert "{" not in text and "points" not in text and "ReLU does not saturate" not in text
    assert i18n.gettext("ReLU does not saturate") == "ReLU does not saturate"  # the lesson's sentence is whole


@pytest.mark.parametrize("code,tied,unlearnt", [("it", "90,0 %", "non ha imparato"), ("zh", "90.0%", "没有学到")])
def test_a_tie_and_an_arm_at_chance_read_in_the_language(lenet, speak, code, tied, unlearnt):
    speak(code)
    tie = conclude(lenet, lenet_arms(0.90, 0.905))
    chance = conclude(lenet, [arm("lenet", "LeNet (tanh, average pooling)", 0.10, num_classes=10),
                              arm("lenet_v2", "LeNetV2 (ReLU, max pooling)", 0.95, num_classes=10)])
    assert tied in tie and unlearnt in chance
    for text in (tie, chance):
        assert "{" not in text and "cannot be told apart" not in text and "did not learn" not in text
