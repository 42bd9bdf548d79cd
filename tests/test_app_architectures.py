"""AppTest of the Architectures page."""


from apphelpers import open_view


def run_app():
    return open_view()


def test_architectures_page_renders_lenet():
    at = run_app()
    assert at.title[0].value == "Architectures"
    assert at.metric[0].value == "44,426"
    assert not at.error
    df = at.dataframe[0].value
    assert "C1" in set(df["layer"]) and 86_400 in set(df["MACs"])


def test_architectures_too_small_input_shows_message():
    at = run_app()
    at.selectbox[0].set_value("alexnet").run()
    assert at.metric[0].value == "62,071,144"
    at.number_input(key="h-alexnet").set_value(32).run()
    at.number_input(key="w-alexnet").set_value(32).run()
    assert not at.exception
    assert at.error and "too small" in at.error[0].value
