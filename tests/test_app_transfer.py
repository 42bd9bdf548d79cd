"""AppTest of the Transfer learning page: statuses, the one-click stand-in, the summary."""


from apphelpers import open_view, using_cache


def test_statuses_and_missing_files_explained(monkeypatch):
    monkeypatch.setenv("CNNLAB_OFFLINE", "1")
    at = open_view("transfer", timeout=300)
    assert at.title[0].value == "Transfer learning"
    text = " ".join(c.value for c in at.caption)
    assert "vgg16-397923af.pth" in text and "101_ObjectCategories" in text
    assert any("offline stand-in" in i.value for i in at.info)
    assert not at.error


def test_standin_runs_with_one_click_and_shows_the_summary(monkeypatch, standin, standin_config):
    """The page's button queues both stand-in trainings; the pretraining is the session's
    (conftest.py), already in the cache, as on a server where someone ran it before."""
    import shutil

    import cnnlab.transfer as transfer
    from cnnlab.jobs import get_manager

    target = transfer._standin_path(standin_config)
    with using_cache(standin[0]):
        cached = transfer._standin_path(standin_config)
    target.parent.mkdir(parents=True)
    shutil.copyfile(cached, target)
    full = transfer.submit_standin
    monkeypatch.setattr(transfer, "submit_standin", lambda cfg=None, manager=None: full(standin_config, manager))
    at = open_view("transfer", timeout=300)
    at.button(key="tl-standin").click().run()
    assert not at.exception and not at.error
    ids = at.session_state["tl-jobs"]
    manager = get_manager()
    for i in ids:
        assert manager.get(i).wait(timeout=180)
        assert manager.get(i).state == "finished", manager.get(i).message
    at.run()
    at.run()
    assert not at.exception and not at.error
    labels = [m.label for m in at.metric]
    assert "Scratch top-1" in labels and "Pretrained top-1" in labels
    assert at.dataframe  # the per-class differences
