"""AppTest of the Train page: a short training driven to the end through the page."""


from apphelpers import open_view


def open_page():
    return open_view("train")


def test_train_page_renders_controls():
    at = open_page()
    assert at.title[0].value == "Train"
    assert at.selectbox(key="train-model").value == "lenet"
    assert at.selectbox(key="train-data").value == "digits"
    assert not at.error


def test_bad_setting_gives_message():
    at = open_page()
    at.number_input(key="train-subset").set_value(5).run()  # fewer images than the 10 classes
    at.button(key="train-start").click().run()
    assert not at.exception
    assert at.error and "subset" in at.error[0].value


def test_short_training_to_the_end_shows_curves_and_run():
    from cnnlab.jobs import get_manager
    from cnnlab.runs import list_runs

    at = open_page()
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

    at = open_page()
    at.selectbox(key="train-data").set_value("shapes").run()
    at.number_input(key="train-epochs").set_value(200).run()  # far longer than this test: cancelled below
    at.button(key="train-start").click().run()
    assert not any("queue" in i.value for i in at.info)  # alone: no queue message
    first = get_manager().get(at.session_state["train-job"])
    at.button(key="train-start").click().run()
    assert any("waits in the queue" in i.value for i in at.info)
    second = get_manager().get(at.session_state["train-job"])
    assert second.id != first.id
    try:
        # a reloaded tab is a new session: the server-owned jobs are still listed
        other = open_page()
        options = other.selectbox(key="train-live-job").options
        assert any(f"#{first.id} " in o for o in options) and any(f"#{second.id} " in o for o in options)
    finally:
        second.cancel()
        first.cancel()
        assert first.wait(60) and second.wait(60)
    assert second.state == "cancelled" and first.state == "cancelled"
