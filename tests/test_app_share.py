"""Links that share a view: the URL restores a page's settings, hides what a lesson fixes, and
refuses what a person could not pick."""

from streamlit.testing.v1 import AppTest

from apphelpers import MAIN


def open_link(params: dict, view: str | None = None) -> AppTest:
    at = AppTest.from_file(MAIN, default_timeout=120)
    at.query_params.update(params)
    if view:
        at.switch_page(f"views/{view}.py")
    at.run()
    assert not at.exception, at.exception
    return at


def url(at: AppTest) -> dict[str, str]:
    """The app's query parameters after a run, one string per name."""
    return {k: v[-1] if isinstance(v, list) else v for k, v in at.query_params.items()}


def test_a_link_restores_the_architectures_view_and_the_url_follows_changes():
    at = open_link({"model": "alexnet", "classes": "10"})
    assert at.selectbox(key="arch-model").value == "alexnet"
    assert at.number_input(key="arch-k").value == 10
    assert at.metric[0].value == "58.0 M"  # AlexNet with a 10-class head: 62,071,144 - 4096x990 - 990
    assert url(at) == {"model": "alexnet", "classes": "10"}
    at.selectbox(key="arch-model").set_value("lenet").run()
    # a new model starts from its own shape; the defaults leave the URL, the choice enters it
    assert at.number_input(key="arch-k").value == 10 and at.number_input(key="arch-h").value == 28
    assert url(at) == {}  # LeNet's own 10 classes and 28x28: nothing differs from its defaults
    at.number_input(key="arch-h").set_value(32).run()
    at.number_input(key="arch-w").set_value(32).run()
    assert url(at) == {"height": "32", "width": "32"}


def test_hidden_settings_are_fixed_and_not_drawn():
    at = open_link({"model": "vgg16", "depth": "1", "_hide": "model,depth"})
    assert not [s for s in at.selectbox if s.key == "arch-model"]
    assert not [s for s in at.slider if s.key == "diagram-depth"]
    assert at.metric[0].value == "138.4 M"
    assert url(at)["_hide"] == "depth,model"  # kept in the URL, so a reload keeps them hidden
    assert "fixes: depth, model" in at.caption[0].value
    assert at.multiselect(key="share-hide-architectures").value == ["depth", "model"]  # a re-shared link keeps them
    at.number_input(key="arch-k").set_value(10).run()  # what is not hidden still changes
    assert not at.exception and at.metric[0].value != "138.4 M"


def test_a_link_cannot_give_what_a_person_could_not_pick():
    at = open_link({"model": "../../etc/passwd", "height": "999999", "channels": "x" * 500, "_hide": "nonsense"})
    assert at.selectbox(key="arch-model").value == "lenet"
    assert at.number_input(key="arch-h").value == 28 and at.number_input(key="arch-c").value == 1
    assert not at.error
    toasts = " ".join(t.value for t in at.toast)
    assert "'model' is not available here" in toasts and "'height'" in toasts


def test_a_lesson_link_opens_the_lesson_with_its_budget_hidden():
    from cnnlab.lessons import builtin_lessons

    third = builtin_lessons()[2]
    at = open_link({"lesson": third.name, "_hide": "budget"}, view="lessons")
    assert third.title in [h.value for h in at.subheader]
    assert not [r for r in at.radio if r.key == "lesson-budget"]


def test_the_share_box_builds_the_link_with_hidden_names():
    at = open_link({"model": "resnet18"})
    at.multiselect(key="share-hide-architectures").set_value(["model"]).run()
    links = [c.value for c in at.code if c.value.startswith("http")]
    assert links == ["http://localhost:8501/?model=resnet18&_hide=model"]


def test_a_train_link_sets_the_training_and_hides_what_the_lesson_fixes():
    at = open_link({"model": "lenet", "dataset": "digits", "epochs": "3", "lr": "0.01", "optimizer": "sgd",
                    "_hide": "model,dataset"}, view="train")
    assert not [s for s in at.selectbox if s.key in ("train-model", "train-data")]
    assert at.number_input(key="train-epochs").value == 3
    assert at.number_input(key="train-lr").value == 0.01
    assert at.selectbox(key="train-opt").value == "sgd"
    assert "fixes: dataset, model" in at.caption[0].value
    at.number_input(key="train-epochs").set_value(4).run()
    assert url(at)["epochs"] == "4" and url(at)["_hide"] == "dataset,model"
    # a path is never read from a link, and a value the page does not offer is refused
    at = open_link({"root": "/etc", "dataset": "folder", "optimizer": "rmsprop-ish", "epochs": "0"}, view="train")
    assert at.selectbox(key="train-opt").value != "rmsprop-ish" and at.number_input(key="train-epochs").value >= 1
    assert not [t for t in at.text_input if t.value == "/etc"]


def test_a_data_link_opens_the_dataset():
    at = open_link({"dataset": "digits", "augment": "none"}, view="data")
    assert at.selectbox(key="data-ds").value == "digits" and at.selectbox(key="data-aug").value == "none"
    assert url(at) == {"dataset": "digits", "augment": "none"}
    at = open_link({"dataset": "digits", "_hide": "dataset"}, view="data")
    assert not [s for s in at.selectbox if s.key == "data-ds"] and not at.exception


def test_a_look_inside_link_opens_the_model_and_a_run_link_names_only_a_run_of_this_server():
    at = open_link({"kind": "zoo", "model": "lenet", "_hide": "kind,model"}, view="inside")
    assert not [r for r in at.radio if r.key == "inside-kind"]
    assert not [s for s in at.selectbox if s.key == "inside-zoo"]
    assert "LeNet" in " ".join(m.value for m in at.markdown)
    from cnnlab.models.pretrained import PRETRAINED

    second = list(PRETRAINED)[1]  # the first is the default: a link leaves it out
    at = open_link({"kind": "pretrained", "pretrained": second}, view="inside")
    assert at.radio(key="inside-kind").value == "pretrained" and at.selectbox(key="inside-pre").value == second
    assert url(at) == {"kind": "pretrained", "pretrained": second}
    at = open_link({"kind": "run", "run": "../../../etc"}, view="predict")  # no run here: nothing is read
    assert not at.exception and not at.error


def _share_box_of_the_architectures_page():
    """The app's own order: the session's language first, then the page's link and its share box."""
    from app import language, share

    language.apply()
    share.open_page("architectures")
    share.share_box("architectures")


def test_a_shared_link_keeps_the_sessions_language(tmp_path, monkeypatch):
    from cnnlab import i18n

    # an Italian catalogue of its own, so the test does not depend on what the real one holds
    (tmp_path / "it.po").write_text('msgid ""\nmsgstr ""\n"Content-Type: text/plain; charset=UTF-8\\n"\n'
                                    '"Language: it\\n"\n', encoding="utf-8")
    monkeypatch.setattr(i18n, "LOCALE_DIR", tmp_path)
    monkeypatch.setattr(i18n, "_source", i18n._source)  # language.apply() installs the session's: put back after
    at = AppTest.from_function(_share_box_of_the_architectures_page, default_timeout=60)
    at.query_params.update({"lang": "it", "model": "alexnet"})
    at.run()
    assert not at.exception, at.exception
    links = [c.value for c in at.code if c.value.startswith("http")]
    assert links == ["http://localhost:8501/?model=alexnet&lang=it"]
    at.multiselect(key="share-hide-architectures").set_value(["model"]).run()
    assert [c.value for c in at.code if c.value.startswith("http")] == [
        "http://localhost:8501/?model=alexnet&lang=it&_hide=model"]
    at.query_params.clear()  # English: no lang in the link, as in the address bar
    at.session_state["lang-on"] = "en"
    at.run()
    assert [c.value for c in at.code if c.value.startswith("http")] == ["http://localhost:8501/?_hide=model"]
