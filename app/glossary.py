"""The words the app uses that a class may not know yet, each in one sentence (the sidebar's "Words used here")."""

from __future__ import annotations

import streamlit as st

from cnnlab.i18n import N_, _

TERMS: dict[str, str] = {  # term -> its meaning, both marked here and translated where shown
    N_("lecture 000-004"): N_("the course's notebooks this app follows: 000 AlexNet, VGG, GoogLeNet and ResNet on "
                              "Caltech101; 001 the output-size formula, transfer learning and TensorBoard; 002 LeNet "
                              "and MiniAlexNet; 003 LeNet5, optimisers and overfitting; 004 the architecture series."),
    N_("lesson"): N_("one comparison of the course run in one click, with a conclusion written from the numbers it "
                     "measured."),
    N_("arm"): N_("one side of a lesson's comparison: one network or one setting, trained like the others."),
    N_("budget"): N_("how long a lesson trains: quick (the app's own small datasets, minutes on a laptop) or full "
                     "(the lecture's dataset and epochs, for a GPU)."),
    N_("epoch"): N_("one pass over all the training images; a step is one batch of them."),
    N_("learning rate"): N_("how far each step moves the weights down the loss."),
    N_("validation accuracy"): N_("the share of images the network has never trained on that it gets right."),
    N_("points"): N_("a difference of accuracies: 70% against 60% is 10 points."),
    N_("noise"): N_("how much an accuracy would change with other validation images; a difference within it is a "
                    "tie."),
    N_("overfitting"): N_("doing much better on the training images than on new ones (it learnt them by heart)."),
    N_("augmentation"): N_("showing each training image shifted, cropped or mirrored, so that it is never seen twice "
                           "the same."),
    N_("kernel (filter)"): N_("the small grid of weights a convolution slides over its input."),
    N_("feature map"): N_("what one filter of a layer puts out for an image: a picture of where it found its "
                          "pattern."),
    N_("receptive field"): N_("the input pixels one output value can see."),
    N_("MACs"): N_("multiply-accumulates: the arithmetic a layer does for one image."),
    N_("Grad-CAM"): N_("a heat map of the image regions that pushed the network towards a class."),
    N_("gradient norm"): N_("how strongly the loss pulls on a layer's weights (the training X-ray)."),
    N_("update-to-weight ratio"): N_("how much one step changes a layer, relative to its size: about 1e-3 is "
                                     "healthy."),
    N_("dead ReLU"): N_("a unit that outputs zero for every image: it passes no gradient and stops learning."),
    N_("saturated unit"): N_("a tanh or sigmoid output stuck near its limit, where almost no gradient passes."),
    N_("transfer learning"): N_("starting from a network trained on another, larger task, with a new last layer."),
    N_("frozen features"): N_("the reused layers are kept fixed; only the new last layer learns."),
    N_("top-1 / top-5"): N_("right when the true class is the network's first guess / among its five first "
                            "guesses."),
}


def glossary() -> None:
    """The terms, in the sidebar, closed until asked for (each in the language in use)."""
    with st.sidebar.expander(_("Words used here"), icon=":material/menu_book:"):
        st.markdown("\n".join(f"- **{_(term)}**: {_(meaning)}" for term, meaning in TERMS.items()))
