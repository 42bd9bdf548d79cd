"""Train: configure a short training, run it in a background job, watch it live."""

from __future__ import annotations

import streamlit as st
from PIL import Image

from app.common import cached_dataset, dataset_choices, dataset_classes, job_label, show_error, training_charts
from cnnlab.data.pipeline import AUGMENT_DESCRIPTIONS, AUGMENT_LABELS, default_input_size, preview
from cnnlab.errors import CnnlabError
from cnnlab.jobs import FINAL_STATES, get_manager
from cnnlab.models import get_spec, list_models
from cnnlab.train import OPTIMIZERS, SCHEDULERS, TrainConfig

st.title("Train")
st.write("Pick a network and a dataset and train for a few minutes. Training runs in the "
         "background on the server: switch pages, reload the tab or open a second one, it keeps "
         "going. Each finished run is saved and appears on the **Runs** page.")

AUG_LABELS = AUGMENT_LABELS  # a view of the one table of presets (cnnlab.data.augment.PRESETS)
OPT_LABELS = {"sgd": "SGD", "momentum": "SGD + momentum 0.9", "adam": "Adam", "adamw": "AdamW"}
SCHED_LABELS = {"none": "Constant", "step": "StepLR (x0.1 every 7 epochs)", "cosine": "Cosine",
                "onecycle": "One-cycle"}

with st.container(border=True):
    c1, c2 = st.columns(2)
    names = [n for n in list_models() if not get_spec(n).adaptive and get_spec(n).family != "transfer"]
    model = c1.selectbox("Model", names, index=names.index("lenet"), key="train-model",
                         format_func=lambda n: f"{get_spec(n).display_name} · {n}")
    datasets, statuses = dataset_choices()
    dataset = c2.selectbox("Dataset", datasets, index=datasets.index("digits"), key="train-data",
                           format_func=lambda n: f"{n} — {statuses[n].state}")
    status = statuses[dataset]
    data_root = None
    if dataset == "folder":
        data_root = c2.text_input("Folder (class subfolders, optionally train/ and val/)", key="train-root")
    elif status.state != "present":
        c2.caption(status.message)

    c1, c2, c3, c4 = st.columns(4)
    epochs = c1.number_input("Epochs", 1, 200, 3, key="train-epochs")
    batch = c2.select_slider("Batch size", [8, 16, 32, 64, 128, 256, 512], 64, key="train-batch")
    optimizer = c3.selectbox("Optimizer", OPTIMIZERS, index=OPTIMIZERS.index("adam"),
                             format_func=OPT_LABELS.get, key="train-opt")
    default_lr = 0.01 if optimizer in ("sgd", "momentum") else 0.001
    lr = c4.number_input("Learning rate", 1e-6, 10.0, default_lr, format="%.5f", key=f"train-lr-{optimizer}")
    c1, c2, c3, c4 = st.columns(4)
    scheduler = c1.selectbox("Schedule", SCHEDULERS, format_func=SCHED_LABELS.get, key="train-sched")
    augment = c2.selectbox("Augmentation", list(AUG_LABELS), format_func=AUG_LABELS.get, key="train-aug")
    subset = c3.number_input("Training images (0 = all)", 0, 1_000_000, 0, step=40, key="train-subset",
                             help="A stratified subset, as in seed 003's 160-image experiment on overfitting.")
    seed = c4.number_input("Seed", 0, 2**31 - 1, 0, key="train-seed")
    weight_decay = st.slider("Weight decay", 0.0, 0.01, 0.0, 0.0001, format="%.4f", key="train-wd")

    spec = get_spec(model)
    if spec.input_shape[1] >= 96:
        st.warning(f"{spec.display_name} works on {spec.input_shape[1]}x{spec.input_shape[2]} images: "
                   "each batch is resized to that size. Without a GPU this is very slow; for a classroom "
                   "minute pick a small model (LeNet, LeNet-5, MiniAlexNet, CIFAR ResNet).", icon="🐢")

    with st.expander("Preview the augmentation on one training image"):
        try:
            bundle = cached_dataset(dataset) if status.state == "present" and dataset != "folder" else None
        except CnnlabError as err:
            bundle = None
            show_error(err)
        if bundle is None:
            st.info("The preview needs the dataset on disk.")
        else:
            idx = st.slider("Image", 0, len(bundle.train) - 1, 0, key="train-prev-idx")
            image = bundle.train.images[idx]
            arr = image.permute(1, 2, 0).numpy()
            img = Image.fromarray(arr[..., 0] if arr.shape[2] == 1 else arr)
            # The trainer's own batch augmentation at the model's input size, seeded by the run's seed.
            size = default_input_size(spec, image.shape[-2:])
            st.caption(f"{AUGMENT_DESCRIPTIONS.get(augment, '')} Shown at the model's input size, "
                       f"{size[0]}x{size[1]}, as the trainer makes them.")
            shots = [img] + preview(image, augment, 7, seed=int(seed), out_size=size)
            st.image([s.resize((96, 96), Image.NEAREST) for s in shots],
                     caption=["original"] + [f"#{i + 1}" for i in range(7)])

    config = TrainConfig(model=model, dataset=dataset, epochs=int(epochs), batch_size=int(batch),
                         optimizer=optimizer, lr=float(lr), weight_decay=float(weight_decay),
                         scheduler=scheduler, augment=augment, subset=int(subset) or None,
                         seed=int(seed), data_root=data_root or None)
    if st.button("Start training", type="primary", key="train-start"):
        try:
            config.validate()
            if dataset == "folder" and not data_root:
                raise CnnlabError("Give the folder of the image dataset first.")
            n_classes = dataset_classes(dataset)
            if subset and n_classes and subset < n_classes:
                raise CnnlabError(f"A subset of {subset} training images is smaller than the {n_classes} "
                                  f"classes of {dataset}: a stratified subset needs at least one per class.")
            job = get_manager().submit(config)
        except CnnlabError as err:
            show_error(err)
        else:
            st.session_state["train-job"] = job.id
            st.session_state["train-live-job"] = job.id  # the live view follows the new job
            busy = [j for j in get_manager().active() if j.id != job.id and j.device == job.device
                    and j.submitted < job.submitted]
            if busy:
                st.info(f"Another training is using the {job.device.upper()}: this one waits in the queue "
                        f"(position {job.position or len(busy)}) and starts when it is free.")


@st.fragment(run_every=1.5)
def live() -> None:
    manager = get_manager()
    jobs = manager.jobs()
    if not jobs:
        st.info("No training yet in this server. Configure one above and press **Start training**.")
        return
    active = manager.active()
    default = st.session_state.get("train-job")
    ids = [j.id for j in reversed(jobs)]
    if default not in ids:
        default = active[0].id if active else ids[0]
    job_id = st.selectbox("Training job", ids, index=ids.index(default), key="train-live-job",
                          format_func=lambda i: job_label(manager.get(i)))
    st.session_state["train-job"] = job_id
    job = manager.get(job_id)
    if job is None:
        return
    events = job.events
    start = next((e for e in events if e["kind"] == "start"), None)
    end = next((e for e in events if e["kind"] == "end"), None)

    if job.state == "queued":
        running = [j for j in manager.active() if j.state == "running" and j.device == job.device]
        if running:
            st.info(f"Waiting in the queue for the {job.device.upper()} (position {job.position}): "
                    f"#{running[0].id} {running[0].config.model} is training.")
        else:
            st.caption("Starting…")
    step = job.latest_step or {}
    epoch = job.latest_epoch or {}
    st.progress(job.progress, text=f"{job.state} · step {step.get('step', 0)} of "
                                   f"{step.get('total_steps', start['total_steps'] if start else '?')}")
    m1, m2, m3, m4, m5 = st.columns(5)
    m1.metric("Epoch", f"{epoch.get('epoch', 0)} / {job.config.epochs}")
    m2.metric("Train loss", f"{step['loss']:.3f}" if "loss" in step else "—")
    m3.metric("Val accuracy", f"{epoch['val_top1']:.1%}" if "val_top1" in epoch else "—")
    m4.metric("Images / s", f"{step.get('images_per_sec', 0):,.0f}")
    eta = step.get("eta")
    m5.metric("ETA", "—" if eta is None or job.done else f"{eta:,.0f} s")
    if start:
        st.caption(f"{start['model']} on {start['dataset']} · {start['device']} · "
                   f"{start['train_images']:,} training and {start['val_images']:,} validation images · "
                   f"{start['num_params']:,} parameters" + ("".join(f" · {n}" for n in start.get("notes") or [])))
    if not job.done:
        if st.button("Stop", key=f"train-stop-{job.id}", type="secondary"):
            job.cancel()
            st.toast("Stopping after the current step; the best weights so far are kept.")
    training_charts(events)
    if end:
        text = end["message"] or end["status"]
        if end["status"] == "finished":
            st.success(f"{text} The run {end['run_id']} is on the **Runs** page.")
        elif end["status"] == "cancelled":
            st.warning(f"{text} Run {end['run_id']} keeps its best weights.")
        else:
            show_error(text, context=f"Training {end['status']}")
    elif job.state in FINAL_STATES and job.message:
        show_error(job.message, context=f"Training {job.state}")


st.subheader("Live")
live()
