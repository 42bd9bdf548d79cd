"""Honest conclusions: written from the measured numbers, saying so when the lecture's expected
arm loses, when the arms are too close to call, and when an arm diverged or failed.

Tests marked "Regression" keep fixed the defects found while writing them.
"""

from __future__ import annotations

import pytest

from cnnlab.lessons import builtin_names, conclude, get_lesson, parse_lesson, render
from cnnlab.lessons.conclude import METRICS, _names, example_arms, noise_margin

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
    assert "95.0%" in text and "60.0%" in text and "35.0%" in text  # both values and the lead
    assert "LeNetV2 (ReLU, max pooling) reached 95.0%" in text


def test_expected_winner_loses_clearly_and_the_conclusion_says_so(lenet):
    """The issue's "honest" test: LeNetV2 is expected first; on this run LeNet wins by far."""
    text = conclude(lenet, lenet_arms(0.80, 0.60))
    assert "ReLU does not saturate" not in text
    assert "learns faster" not in text
    assert "LeNet (tanh, average pooling) did" in text  # the default "unexpected" sentence
    assert "expects LeNetV2 (ReLU, max pooling) to come first" in text
    assert "80.0%" in text and "60.0%" in text


def test_a_difference_within_the_noise_is_too_close_to_call(lenet):
    margin = noise_margin(arm("a", "A", 0.705), arm("b", "B", 0.700), "best_val_top1", None)
    assert 0.005 < margin  # 1000 validation images: half a point is noise
    for values in ((0.705, 0.700), (0.700, 0.705)):  # the expected arm narrowly behind, then ahead
        text = conclude(lenet, lenet_arms(*values))
        assert "within the noise" in text, text  # the lesson's own "close" sentence
        assert "ReLU does not saturate" not in text
        assert "70.5%" in text and "70.0%" in text
        assert f"±{margin:.1%}" in text


def test_the_same_difference_on_a_large_validation_set_is_not_noise(lenet):
    arms = lenet_arms(0.700, 0.720)
    for a in arms:
        a["val_images"] = 100_000
    assert "ReLU does not saturate" in conclude(lenet, arms)
    for a in arms:
        a["val_images"] = 200
    assert "within the noise" in conclude(lenet, arms)


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
    assert "Only no arm finished" in text or "no arm" in text
    assert "cannot answer" in text
    assert "out of memory" in text and "cancelled" in text


def test_a_finished_arm_without_the_metric_is_not_ranked(lenet):
    arms = lenet_arms(0.8, 0.9)
    arms[1]["best_val_top1"] = None  # e.g. stopped before its first validation
    assert "cannot answer" in conclude(lenet, arms)


@pytest.mark.parametrize("name", builtin_names())
def test_every_builtin_lesson_concludes_honestly(name):
    """For each built-in lesson: its expected sentence when the expected arm (or the first arm, when
    the lesson expects none) wins by far; when the expected arm comes last by far, never that sentence."""
    lesson = get_lesson(name)
    c = lesson.conclusion
    higher = c.higher_is_better
    tie = c.tie or 0.0
    good, bad, middle = (0.95 + 3 * tie, 0.30, 0.50) if higher else (0.05, 0.90 + 3 * tie, 0.60 + tie)
    ids = [a.id for a in lesson.arms]
    winner = c.expect or ids[0]

    def arms_with(values):
        arms = example_arms(lesson)
        for a in arms:
            a["val_images"] = 100_000
            a[c.metric] = values[a["id"]]
        return arms

    wins = arms_with({i: good if i == winner else bad for i in ids})
    text = conclude(lesson, wins, "quick")
    assert render(c.expected, _names(lesson, wins, "quick")) in text
    if c.always:
        assert render(c.always, _names(lesson, wins, "quick")) in text

    if c.expect is None:
        return
    other = next(a.id for a in lesson.arms if a.id != c.expect and a.compare)  # a preparatory arm is never ranked
    loses = arms_with({i: bad if i == c.expect else good if i == other else middle for i in ids})
    text = conclude(lesson, loses, "quick")
    assert render(c.expected, _names(lesson, loses, "quick")) not in text
    assert lesson.arm(other).name in text  # the arm that really came first is named
    if c.unexpected:
        assert render(c.unexpected, _names(lesson, loses, "quick")) in text
    else:
        assert f"expects {lesson.arm(c.expect).name} to come first" in text


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
    assert text.startswith("Good came first with 90.0%, 50.0% above Too small.")
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
    assert text.startswith("Surprise: Too small beat Good.")
    assert "came first with" not in text


def test_no_expected_arm_close_and_clear(three):
    lesson = parse_lesson(THREE.replace('expect = "good"\n', ""), "three")
    clear = [arm("small", "Too small", 0.40), arm("good", "Good", 0.90), arm("large", "Too large", 0.50)]
    assert conclude(lesson, clear).startswith("Good came first with 90.0%, 50.0% above Too small.")
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
    assert conclude(lesson, fast_good).startswith("Good came first with 2.0 s, 7.0 s above Too small.")
    slow_good = [arm("small", "Too small", 0.5, epoch_seconds=1.0), arm("good", "Good", 0.5, epoch_seconds=9.0),
                 arm("large", "Too large", 0.5, epoch_seconds=5.0)]
    text = conclude(lesson, slow_good)
    assert "came first with" not in text and "Too small did" in text
    within_tie = [arm("small", "Too small", 0.5, epoch_seconds=2.2), arm("good", "Good", 0.5, epoch_seconds=2.0),
                  arm("large", "Too large", 0.5, epoch_seconds=5.0)]
    assert "too close to call" in conclude(lesson, within_tie)


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
    assert noise_margin({"seconds": 3.0}, {"seconds": 4.0}, "seconds", 0.5) == 0.5
    assert noise_margin({"seconds": 3.0}, {"seconds": 4.0}, "seconds", None) == 0.0
    # the tie is a floor for accuracies too
    big = {"best_val_top1": 0.7, "val_images": 1_000_000}
    assert noise_margin(big, big, "best_val_top1", 0.05) == 0.05
    assert all(isinstance(m.higher_is_better, bool) for m in METRICS.values())
