"""The words the app uses that a class may not know yet, each in one sentence (the sidebar's "Words used here")."""

from __future__ import annotations

import streamlit as st

TERMS: dict[str, str] = {
    "lecture 000-004": "the course's notebooks this app follows: 000 AlexNet, VGG, GoogLeNet and ResNet on Caltech101; "
                       "001 the output-size formula, transfer learning and TensorBoard; 002 LeNet and MiniAlexNet; "
                       "003 LeNet5, optimisers and overfitting; 004 the architecture series.",
    "lesson": "one comparison of the course run in one click, with a conclusion written from the numbers it measured.",
    "arm": "one side of a lesson's comparison: one network or one setting, trained like the others.",
    "budget": "how long a lesson trains: quick (the app's own small datasets, minutes on a laptop) or full "
              "(the lecture's dataset and epochs, for a GPU).",
    "epoch": "one pass over all the training images; a step is one batch of them.",
    "learning rate": "how far each step moves the weights down the loss.",
    "validation accuracy": "the share of images the network has never trained on that it gets right.",
    "points": "a difference of accuracies: 70% against 60% is 10 points.",
    "noise": "how much an accuracy would change with other validation images; a difference within it is a tie.",
    "overfitting": "doing much better on the training images than on new ones (it learnt them by heart).",
    "augmentation": "showing each training image shifted, cropped or mirrored, so that it is never seen twice the same.",
    "kernel (filter)": "the small grid of weights a convolution slides over its input.",
    "feature map": "what one filter of a layer puts out for an image: a picture of where it found its pattern.",
    "receptive field": "the input pixels one output value can see.",
    "MACs": "multiply-accumulates: the arithmetic a layer does for one image.",
    "Grad-CAM": "a heat map of the image regions that pushed the network towards a class.",
    "gradient norm": "how strongly the loss pulls on a layer's weights (the training X-ray).",
    "update-to-weight ratio": "how much one step changes a layer, relative to its size: about 1e-3 is healthy.",
    "dead ReLU": "a unit that outputs zero for every image: it passes no gradient and stops learning.",
    "saturated unit": "a tanh or sigmoid output stuck near its limit, where almost no gradient passes.",
    "transfer learning": "starting from a network trained on another, larger task, with a new last layer.",
    "frozen features": "the reused layers are kept fixed; only the new last layer learns.",
    "top-1 / top-5": "right when the true class is the network's first guess / among its five first guesses.",
}


def glossary() -> None:
    """The terms, in the sidebar, closed until asked for."""
    with st.sidebar.expander("Words used here", icon=":material/menu_book:"):
        st.markdown("\n".join(f"- **{term}**: {meaning}" for term, meaning in TERMS.items()))
