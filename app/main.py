"""cnnlab — the Streamlit app. Run with: streamlit run app/main.py"""

from __future__ import annotations

import sys
from pathlib import Path

import streamlit as st

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # `streamlit run app/main.py` from a fresh clone, no install step
    sys.path.insert(0, str(ROOT))

from app import language, present  # noqa: E402
from app.common import sidebar_status  # noqa: E402
from app.glossary import glossary  # noqa: E402
from app.share import open_page, share_box  # noqa: E402
from cnnlab.i18n import _  # noqa: E402

language.apply()  # before any text: every page, rerun and fragment speaks the session's language

# a local icon: a Material icon's favicon is fetched from fonts.gstatic.com, and a classroom app sends nothing out
PRODUCT = "cnnlab"  # a name: the same in every language
st.set_page_config(page_title=PRODUCT, page_icon=str(Path(__file__).parent / "icon.png"), layout="wide",
                   initial_sidebar_state=present.sidebar_state())

# less empty space above each page's title: on a projector at 1280x720 the content starts higher
st.html("<style>[data-testid='stMainBlockContainer'] {padding-top: 2.5rem;}</style>")

if "class" in st.query_params:  # a student's link: the class session's question and nothing else of the app
    from app.classroom_view import student_page  # noqa: E402  (only a student's page needs it)

    student_page(st.query_params["class"])
    st.stop()

PAGES = Path(__file__).parent / "views"
pages = [
    st.Page(str(PAGES / "architectures.py"), title=_("Architectures"), icon=":material/account_tree:", default=True),
    st.Page(str(PAGES / "data.py"), title=_("Data"), icon=":material/photo_library:"),
    st.Page(str(PAGES / "mydata.py"), title=_("Your images"), icon=":material/add_photo_alternate:"),
    st.Page(str(PAGES / "inside.py"), title=_("Look inside"), icon=":material/visibility:"),
    st.Page(str(PAGES / "convolution.py"), title=_("Convolution"), icon=":material/grid_4x4:"),
    st.Page(str(PAGES / "train.py"), title=_("Train"), icon=":material/model_training:"),
    st.Page(str(PAGES / "transfer.py"), title=_("Transfer learning"), icon=":material/swap_horiz:"),
    st.Page(str(PAGES / "lessons.py"), title=_("Lessons"), icon=":material/school:"),
    st.Page(str(PAGES / "runs.py"), title=_("Runs"), icon=":material/history:"),
    st.Page(str(PAGES / "predict.py"), title=_("Predict"), icon=":material/label:"),
]
nav = st.navigation(pages)
page = nav.url_path or "architectures"  # the default page's path is the bare address
open_page(page)
sidebar_status()
language.picker()
present.apply()
glossary()
share_box(page)
nav.run()
