"""AppTest of the Data page: class counts, the grid of samples, an image's channels and pixel values,
the augmentation preview; switching datasets; a dataset not on disk is never downloaded."""

from apphelpers import open_view


def images_shown(at) -> int:
    return len(at.get("image"))


def test_data_page_opens_on_the_embedded_shapes():
    at = open_view("data")
    assert at.title[0].value == "Data"
    assert at.selectbox(key="data-ds").value == "shapes"
    metrics = {m.label: m.value for m in at.metric}
    assert metrics == {"Total images": "7,500", "Training images": "6,000",
                       "Min per class": metrics["Min per class"], "Max per class": metrics["Max per class"]}
    assert int(metrics["Min per class"].replace(",", "")) <= int(metrics["Max per class"].replace(",", ""))
    assert [s.value for s in at.subheader] == ["Images per class", "Samples of every class",
                                               "One image, channel by channel", "Augmentation"]
    # the grid; the image with its patch marked, its R, G and B channels, the zoomed patch; the augmentations
    assert images_shown(at) == 7
    assert len(at.get("vega_lite_chart")) == 1  # the class counts
    assert len(at.dataframe) >= 3  # the R, G and B values of the patch (the table of counts too)
    assert not at.error and not at.exception


def test_switching_to_digits_and_moving_the_patch():
    at = open_view("data")
    at.selectbox(key="data-ds").set_value("digits").run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Training images"] == "1,438"
    assert metrics["Total images"] == "1,797"
    assert images_shown(at) == 5  # one grey channel instead of three
    at.slider(key="data-idx-digits").set_value(7).run()
    at.slider(key="data-px-digits").set_value(20).run()
    at.slider(key="data-py-digits").set_value(0).run()
    assert not at.exception and not at.error
    from cnnlab.data import load_dataset

    image = load_dataset("digits").train.images[7]
    patch = at.dataframe[-1].value  # the one grey channel's values
    assert patch.values.tolist() == image[0, 0:8, 20:28].tolist()
    at.selectbox(key="data-aug").set_value("imagenet").run()
    at.slider(key="data-grid-n").set_value(3).run()
    assert not at.exception and not at.error


def test_a_dataset_not_on_disk_is_not_downloaded():
    at = open_view("data")
    options = at.selectbox(key="data-ds").options
    missing = [o for o in options if not o.endswith("present")]
    assert missing, options
    name = missing[0].split(" — ")[0]
    at.selectbox(key="data-ds").set_value(name).run()
    assert not at.exception and not at.error
    assert at.info and "does not download" in at.info[0].value
    assert not at.metric


def test_settings_survive_a_page_switch():
    at = open_view("data")
    at.selectbox(key="data-ds").set_value("digits").run()
    at.slider(key="data-grid-n").set_value(4).run()
    at.switch_page("views/train.py").run()
    at.switch_page("views/data.py").run()
    assert not at.exception
    assert at.selectbox(key="data-ds").value == "digits"
    assert at.slider(key="data-grid-n").value == 4
