"""Train: choose features, model, hyperparameters and split; train in the background and watch it."""
from __future__ import annotations

import streamlit as st

from audioclf import jobs
from audioclf.datasets import FSDD_SPEAKER_PATTERN, MAX_FOLDS, METHODS, MIN_FOLDS, SplitConfig, has_background
from audioclf.features import MFCCConfig, SpectralConfig
from audioclf.model import ModelConfig
from audioclf.model.configs import ACTIVATIONS, KINDS, MAX_MEMBERS, POOLINGS
# light: TensorFlow is imported by the training process
from audioclf.training import AutoFeatures, RunConfig, TrainConfig, not_applicable, resolve_settings
from audioclf.training.config import FINETUNE_ALL, MAX_AVERAGE_EPOCHS
from audioclf.training.defaults import AUTO, DEFAULT_MODEL_KIND
from app_pages import efficientat_panel, run_panel
from app_pages.train_jobs import PENDING_KEY, cross_validate, launch, pending_prompt
from app_pages.common import (plural, DATASET_KEY, MODEL_NAMES, SPLIT_NAMES, TRAIN_PRESET_KEY, code,
                              current_dataset, feature_note, guard, md, yamnet_reason)

FEATURE_CHOICES = {"Auto: let my data choose (pretrained models or MFCC)": AUTO, "MFCC sequence": "mfcc",
                 "Spectral frames (MFCC, centroid, roll-off, ZCR, chroma, RMS)": "spectral",
                 "YAMNet embeddings (pretrained)": "yamnet",
                 "EfficientAT embeddings (pretrained, AudioSet)": "efficientat"}
EAT_SEQUENCES = {"frames": "Frames: the last feature map, every 0.32 s",
                 "windows": "Windows: a clip embedding per 0.96 s, every 0.32 s"}
DEFAULTS_KEY = "_tr_defaults"  # the per-feature defaults the fields were last filled with
FRAME_TRAIN = resolve_settings("mfcc")[1]  # where the warp factors and the LR schedule come from
WARPS = FRAME_TRAIN.warp_augment
REDUCE_LR = FRAME_TRAIN.reduce_lr
AUTO_HELP = ("Before training, each feature type that can run here (EfficientAT and YAMNet embeddings, "
             "MFCCs) is scored by a quick cross-validation on the training clips (never the test clips); the "
             "best one trains, with its own recommended model and training settings. The pretrained models "
             "usually win on environmental sounds, MFCC on speech.")
KFOLD = "kfold"
SPLIT_CHOICES = {**SPLIT_NAMES, KFOLD: "k-fold cross-validation (not saved)"}
RATES = {"16000 Hz": 16000, "22050 Hz": 22050, "44100 Hz": 44100, "native (each file's rate)": None}
UNITS = (16, 32, 48, 64, 96, 128, 192, 256)
BATCHES = (16, 32, 64, 128)
LEARNING_RATES = (1e-4, 3e-4, 1e-3, 3e-3, 1e-2)
BACKBONE_RATES = (1e-5, 3e-5, 1e-4, 3e-4, 1e-3)
FINETUNE_CHOICES = (0, 1, 2, 3, 4, FINETUNE_ALL)
MIXUPS = (0.0, 0.2, 0.4, 1.0)
MIXUP_HELP = ("Training only: blend each training clip with another one of its batch, labels alike, the share "
              "drawn from Beta(alpha, alpha), so the model learns that between two sounds lies a mixture. "
              "0 is off; EfficientAT was trained with it (docs/RESULTS.md has what it did here).")
FINETUNE_HELP = ("Train EfficientAT's last blocks together with the model, at their own (smaller) learning rate, "
                 "instead of only reading its frozen features. The lower blocks still run once per clip, but "
                 "every epoch runs the fine-tuned blocks forwards and backwards: slower per epoch the more "
                 "blocks, and the run's model holds the network (docs/RESULTS.md has what it gained and cost).")
N_FFTS = (256, 512, 1024, 2048, 4096)
HOPS = (64, 128, 256, 512, 1024)


def _options(values, default, key: str | None = None) -> list:
    """`values` with the library default included (forms never invent other defaults), and the
    widget's current value when a preset (e.g. a tuned config) chose one outside the list."""
    extra = {st.session_state[key]} if key and st.session_state.get(key) is not None else set()
    return sorted(set(values) | {default} | extra, key=lambda v: (v is None, v))


def _select(label, values, default, **kw):
    opts = _options(values, default, kw.get("key"))
    return st.selectbox(label, opts, index=opts.index(default), **kw)


def preset_values(cfg: dict) -> dict:
    """The Train form's widget values for a RunConfig dict (the Tune page's best config)."""
    f, m, t, s = cfg["features"], cfg["model"], cfg["train"], cfg["split"]
    values = {"tr_feat": next(k for k, v in FEATURE_CHOICES.items() if v == f["kind"]),
              "tr_model": m["kind"], "tr_split": s["method"]}
    if f["kind"] == "efficientat":
        seq = f.get("sequence", "frames")
        values.update(tr_eat_model=f.get("model") or "", tr_eat_seq=seq if seq in EAT_SEQUENCES else "frames",
                      tr_eat_yamnet=f.get("yamnet") is not None)
    if f["kind"] in ("mfcc", "spectral"):
        values.update(tr_sr=next((k for k, v in RATES.items() if v == f.get("sr")), list(RATES)[0]),
                      tr_nmfcc=f["n_mfcc"], tr_nfft=f["n_fft"], tr_hop=f["hop_length"], tr_nmels=f["n_mels"])
    if f["kind"] == "mfcc":
        values.update(tr_deltas=bool(f.get("deltas")), tr_trim=f.get("trim_db") is not None)
    if m["kind"] != "baseline" and m["rnn_units"]:
        values.update(tr_layers=len(m["rnn_units"]), tr_units=m["rnn_units"][0])
    values["tr_dense_layers"] = len(m["dense_units"])
    if m["dense_units"]:
        values["tr_dense_units"] = m["dense_units"][0]
    values.update(tr_act=m["activation"], tr_dropout=float(m["dropout"]), tr_l2=float(m["l2"]),
                  tr_clip_norm=bool(m.get("clip_norm", True)),
                  tr_pooling=m["pooling"], tr_time_mask=m["time_mask"], tr_feature_mask=m["feature_mask"],
                  tr_noise=float(m["input_noise"]), tr_members=m["members"])
    values.update(tr_lr=float(t["learning_rate"]), tr_batch=t["batch_size"], tr_epochs=t["epochs"],
                  tr_patience=t["patience"] if t["patience"] else "none", tr_min_epochs=t["min_epochs"],
                  tr_weights=bool(t["class_weights"]), tr_warp=bool(t["warp_augment"]),
                  tr_reduce_lr=t["reduce_lr"] is not None, tr_val=float(s["val"]), tr_seed=s["seed"],
                  tr_finetune=int(t.get("finetune_blocks", 0)),
                  tr_backbone_lr=float(t.get("backbone_learning_rate", TrainConfig().backbone_learning_rate)),
                  tr_average=int(t.get("average_epochs", TrainConfig().average_epochs)),
                  tr_mixup=float(t.get("mixup", 0.0)),
                  tr_name=cfg.get("name", ""))
    if s["method"] != "fixed":
        values["tr_test"] = float(s["test"])
    if s.get("group_pattern"):
        values["tr_group"] = s["group_pattern"]
    return values


def apply_preset() -> None:
    """Fill the form from a config another page left in the session (once)."""
    cfg = st.session_state.pop(TRAIN_PRESET_KEY, None)
    if not cfg:
        return
    try:
        values = preset_values(cfg)
    except (KeyError, IndexError, StopIteration, TypeError):
        st.warning("That configuration could not be put into the form; it shows the defaults.")
        return
    st.session_state.update(values)
    # The preset's values are the user's now: a later switch of feature type keeps them.
    st.session_state[DEFAULTS_KEY] = widget_defaults(cfg["features"]["kind"], cfg["model"]["kind"])
    st.info(f"The form holds the configuration **{cfg.get('name') or 'from the search'}**; "
            "start training or change it first.", icon=":material/tune:")


def auto_note():
    st.caption("Auto trains the model chosen above with the recommended settings of the feature type it "
               "picks. To change them, choose a feature type.")
    return lambda: None


def auto_train_fields():
    """With Auto, only the epoch budget is the user's; returns overrides instead of a TrainConfig."""
    # No help icon: the field keeps the same accessible name as the other feature types' epochs field.
    epochs = st.number_input("Epochs (maximum)", 1, 1000, value=FRAME_TRAIN.epochs, key="tr_auto_epochs")
    return lambda seed: {"train.seed": seed, "train.epochs": int(epochs)}


def feature_fields(kind: str):
    """Widgets for the chosen feature type; returns a function building its config."""
    if kind == AUTO:
        st.caption(AUTO_HELP)
        return lambda: AutoFeatures()
    if kind == "yamnet":
        st.caption("1024-d YAMNet embedding per 0.96 s window (0.48 s hop), audio resampled to 16 kHz.")
        from audioclf.features import YAMNetConfig

        return lambda: YAMNetConfig()
    if kind == "efficientat":
        from audioclf.features import EfficientATConfig

        model = st.session_state.get("tr_eat_model", "")
        st.caption(f"EfficientAT {model or 'mn04_as'} (AudioSet, distilled from PaSST): one embedding "
                   "(384 numbers for mn04) per step, audio resampled to 32 kHz.")
        seq = st.selectbox("Sequence", list(EAT_SEQUENCES), format_func=EAT_SEQUENCES.get, key="tr_eat_seq",
                           help="What the recurrent models read over time. The dense baseline uses the "
                                "clip's mean, which for frames is EfficientAT's own clip embedding.")
        missing = yamnet_reason()
        both = st.checkbox("Also hear through YAMNet", key="tr_eat_yamnet", disabled=bool(missing),
                           help=missing or "Each step also gets YAMNet's embedding, and the model a network "
                                "for each of the two: they mishear different clips, so together they "
                                "hear more. Both networks run on every clip and the model trains two "
                                "networks, so extraction and training take longer.")
        return lambda: EfficientATConfig(model=model, sequence=seq, yamnet="" if both and not missing else None)
    base = MFCCConfig() if kind == "mfcc" else SpectralConfig()
    rate_names = list(RATES)
    default_rate = next((k for k, v in RATES.items() if v == base.sr), rate_names[0])
    if kind == "spectral":
        rate_names = [r for r in rate_names if RATES[r] is not None]  # spectral needs a fixed rate
    rate = st.selectbox("Sample rate", rate_names, index=rate_names.index(default_rate), key="tr_sr")
    n_mfcc = st.slider("n_mfcc", 5, 40, base.n_mfcc, key="tr_nmfcc")
    n_fft = _select("n_fft (window, samples)", N_FFTS, base.n_fft, key="tr_nfft")
    hop = _select("Hop length (samples)", HOPS, base.hop_length, key="tr_hop")
    n_mels = st.slider("n_mels", 16, 256, base.n_mels, step=8, key="tr_nmels")
    deltas = st.checkbox("Add deltas and delta-deltas", value=getattr(base, "deltas", False),
                         disabled=kind != "mfcc", key="tr_deltas")
    trim = st.checkbox("Trim leading/trailing silence", value=getattr(base, "trim_db", None) is not None,
                       disabled=kind != "mfcc", key="tr_trim",
                       help="Cut audio more than 30 dB below the clip's peak at both ends.")
    if kind == "mfcc":
        trim_db = (base.trim_db or 30.0) if trim else None
        return lambda: MFCCConfig(sr=RATES[rate], n_mfcc=n_mfcc, n_fft=n_fft, hop_length=hop,
                                  n_mels=n_mels, deltas=deltas, trim_db=trim_db)
    return lambda: SpectralConfig(sr=RATES[rate], n_fft=n_fft, hop_length=hop, n_mfcc=n_mfcc,
                                  n_mels=n_mels)


def widget_defaults(feature_kind: str, model_kind: str) -> dict:
    """{widget key: value} of the model and training fields for this feature type and model kind."""
    from audioclf.training import resolve_settings

    m, t = resolve_settings(feature_kind, {"model.kind": model_kind})
    return {"tr_layers": max(1, len(m.rnn_units)), "tr_units": m.rnn_units[0] if m.rnn_units else 64,
            "tr_dense_layers": len(m.dense_units), "tr_dense_units": m.dense_units[0] if m.dense_units else 64,
            "tr_act": m.activation, "tr_dropout": float(m.dropout), "tr_l2": float(m.l2),
            "tr_clip_norm": m.clip_norm, "tr_pooling": m.pooling, "tr_time_mask": m.time_mask,
            "tr_feature_mask": m.feature_mask, "tr_noise": float(m.input_noise), "tr_members": m.members,
            "tr_lr": t.learning_rate, "tr_batch": t.batch_size, "tr_epochs": t.epochs,
            "tr_patience": t.patience if t.patience else "none", "tr_min_epochs": t.min_epochs,
            "tr_weights": t.class_weights, "tr_warp": bool(t.warp_augment),
            "tr_reduce_lr": t.reduce_lr is not None, "tr_finetune": t.finetune_blocks,
            "tr_backbone_lr": t.backbone_learning_rate, "tr_average": t.average_epochs, "tr_mixup": t.mixup}


def follow_defaults(feature_kind: str, model_kind: str) -> dict:
    """Fill the fields with this feature type's defaults; after a switch of feature type (or
    model kind) a field still at the old default takes the new one, a value the user set stays."""
    new = widget_defaults(feature_kind, model_kind)
    old = st.session_state.get(DEFAULTS_KEY)
    for key, value in new.items():
        if key not in st.session_state or (old is not None and st.session_state[key] == old.get(key)):
            st.session_state[key] = value
    st.session_state[DEFAULTS_KEY] = new
    return new


def model_fields(feature_kind: str, kind: str):
    d = follow_defaults(feature_kind, kind)
    na = not_applicable(feature_kind)
    recurrent = kind != "baseline"
    if recurrent:
        layers = st.slider("Recurrent layers", 1, 3, key="tr_layers")
        units = st.selectbox("Units per recurrent layer", _options(UNITS, d["tr_units"], "tr_units"), key="tr_units")
    else:
        layers, units = 0, 0
    dense_layers = st.slider("Dense layers", 0 if recurrent else 1, 3, key="tr_dense_layers")
    dense_units = st.selectbox("Units per dense layer", _options(UNITS, d["tr_dense_units"], "tr_dense_units"), key="tr_dense_units")
    activation = st.selectbox("Activation", ACTIVATIONS, key="tr_act")
    dropout = st.slider("Dropout", 0.0, 0.8, step=0.05, key="tr_dropout")
    l2 = st.number_input("L2 regularisation", 0.0, 1.0, step=1e-4, format="%.5f", key="tr_l2")
    # Checkbox labels short enough for a quarter of the page (longer ones were cut off with "..."):
    # what they mean is in their help.
    clip_norm = st.checkbox("Normalise each clip", disabled=not recurrent, key="tr_clip_norm",
                            help="Scale each clip's features by its own mean and std: removes a microphone's "
                                 "or a voice's colouring from frame features (MFCC); off for YAMNet, whose "
                                 "clip-level embedding is what tells sounds apart.")
    pooling = st.selectbox("Clip summary", POOLINGS, disabled=not recurrent, key="tr_pooling",
                           help="last hidden state, or mean (and max) of the outputs over time")
    time_mask = st.slider("Time mask (frames, training only)", 0, 40, disabled=not recurrent, key="tr_time_mask",
                          help="YAMNet has about two frames per second, MFCC about 60: masks are sized to match.")
    feature_mask = st.slider("Feature mask (dims, training only)", 0, 10, disabled=not recurrent,
                             key="tr_feature_mask")
    noise = st.slider("Input noise (std, training only)", 0.0, 1.0, step=0.05, disabled=not recurrent, key="tr_noise")
    members = st.slider("Ensemble members", 1, MAX_MEMBERS, key="tr_members",
                        help="Train this many copies of the network side by side and average their "
                             "probabilities: steadier on new recordings, but each costs training time.")
    scale = clip_norm and "model.clip_scale" not in na
    return lambda: ModelConfig(kind=kind, rnn_units=(units,) * layers, dense_units=(dense_units,) * dense_layers,
                               activation=activation, dropout=dropout, l2=l2, clip_norm=clip_norm,
                               clip_scale=scale, pooling=pooling, time_mask=time_mask,
                               feature_mask=feature_mask, input_noise=noise, members=members)


def train_fields(feature_kind: str):
    d = st.session_state[DEFAULTS_KEY]
    na = not_applicable(feature_kind)
    lr = st.select_slider("Learning rate", _options(LEARNING_RATES, d["tr_lr"], "tr_lr"), key="tr_lr")
    batch = st.selectbox("Batch size", _options(BATCHES, d["tr_batch"], "tr_batch"), key="tr_batch")
    epochs = st.number_input("Epochs (maximum)", 1, 1000, key="tr_epochs")
    patience_opts = [*_options((5, 10, 20), d["tr_patience"] if d["tr_patience"] != "none" else 10,
                               "tr_patience" if st.session_state.get("tr_patience") != "none" else None), "none"]
    patience = st.selectbox("Early-stopping patience (epochs)", patience_opts, key="tr_patience")
    min_epochs = st.number_input("Early stopping starts after epoch", 0, 1000, key="tr_min_epochs",
                                 help="Early stopping neither stops nor picks its best epoch before this one: "
                                      "validation loss on few clips often looks best very early.")
    weights = st.checkbox("Class weights", key="tr_weights",
                          help="Weigh each class's clips by how rare the class is, so rare classes count as "
                               "much as common ones.")
    warp_na = na.get("train.warp_augment")
    warp = st.checkbox("Voice-warp copies", key="tr_warp", disabled=bool(warp_na),
                       help=warp_na or "Extra training copies with the frequency axis scaled "
                                       f"({' and '.join(f'x{w:g}' for w in WARPS)}), so the model hears "
                                       "higher and lower voices.")
    reduce_lr = st.checkbox("Halve the rate on plateaus", key="tr_reduce_lr",
                            help="Halve the learning rate when the validation loss (or, without validation "
                                 "clips, the training loss) stops improving.")
    average = st.number_input("Average the weights of this many epochs", 0, MAX_AVERAGE_EPOCHS, key="tr_average",
                              help="Keep the mean of the weights of this many epochs centred on the best one "
                                   "(0: the best epoch's own), used only if it scores no worse on the "
                                   "validation clips. Which single epoch looks best on few clips is partly "
                                   "chance. Needs validation clips and early stopping.")
    mixup = st.selectbox("Mixup (alpha)", _options(MIXUPS, d["tr_mixup"], "tr_mixup"), key="tr_mixup",
                         format_func=lambda a: "off" if a == 0 else f"{a:g}", help=MIXUP_HELP)
    finetune, backbone_lr = 0, d["tr_backbone_lr"]
    if feature_kind == "efficientat":
        finetune = st.selectbox("Fine-tune EfficientAT's top blocks", FINETUNE_CHOICES, key="tr_finetune",
                                format_func=lambda n: "none (frozen, fastest)" if n == 0 else
                                "all of it" if n == FINETUNE_ALL else f"the last {plural(n, 'block')}",
                                help=FINETUNE_HELP)
        backbone_lr = st.select_slider("Fine-tuned blocks' learning rate",  # in a form: never disabled by the above
                                       _options(BACKBONE_RATES, d["tr_backbone_lr"], "tr_backbone_lr"),
                                       key="tr_backbone_lr", help="Adam's rate for the fine-tuned blocks only.")
    return lambda seed: TrainConfig(learning_rate=lr, batch_size=batch, epochs=int(epochs),
                                    patience=None if patience == "none" else int(patience),
                                    min_epochs=int(min_epochs),
                                    class_weights=weights, seed=seed,
                                    warp_augment=WARPS if warp and not warp_na else (),
                                    reduce_lr=REDUCE_LR if reduce_lr else None,
                                    finetune_blocks=int(finetune), backbone_learning_rate=float(backbone_lr),
                                    average_epochs=int(average), mixup=float(mixup))


NO_VAL_HELP = ("0: no validation clips; every clip that is not test trains, and early stopping "
               "and the learning-rate schedule watch the training loss instead. With few "
               "speakers or sessions this can beat holding some out.")


def split_fields(method: str):
    base = SplitConfig()
    k, by_group = 5, False
    if method == KFOLD:
        k = st.slider("Folds (k)", MIN_FOLDS, MAX_FOLDS, 5, key="tr_k")
        by_group = st.checkbox("Keep groups together", key="tr_kgroup",
                               help="No group (by the group regex below) has clips in two folds.")
        val = st.slider("Validation share (for early stopping, inside each fold)", 0.0, 0.4,
                        base.val, step=0.05, key="tr_val", help=NO_VAL_HELP)
        test = 0.0
    elif method == "fixed":
        st.caption("Uses the data set's own train/ val/ test/ folders.")
        val = st.slider("Validation share taken from train/ when there is no val/ folder", 0.0, 0.4,
                        base.val, step=0.05, key="tr_val", help=NO_VAL_HELP)
        test = 0.0
    else:
        val = st.slider("Validation share", 0.0, 0.4, base.val, step=0.05, key="tr_val", help=NO_VAL_HELP)
        test = st.slider("Test share", 0.05, 0.4, base.test, step=0.05, key="tr_test")
    pattern = None
    if method == "group" or by_group:
        pattern = st.text_input("Group regex (first group = group id)", FSDD_SPEAKER_PATTERN, key="tr_group",
                                help="Clips whose file names give the same group never end up in two "
                                     "splits. The default takes the speaker of FSDD names like 3_jackson_12.wav.")
    seed = st.number_input("Seed", 0, 2**31 - 1, base.seed, key="tr_seed")
    real = ("group" if by_group else "stratified") if method == KFOLD else method
    return lambda: SplitConfig(method=real, val=val, test=test, seed=int(seed),
                               group_pattern=pattern or None), int(seed), k


def start(ds, make_features, make_model, make_train, make_split, name: str) -> None:
    """Validate everything (the library's one pre-flight path), then start the background run
    (or cross-validate).

    While another run or a search is in progress nothing starts (one job at a time,
    `jobs.one_at_a_time`, as on the Tune page): the config waits in the session,
    shown with a choice, for the user to start it or drop it (see `pending_prompt`).
    """
    from audioclf.training import prepare_run

    with guard("Cannot start training"):
        split, seed, k = make_split
        split = split()
        model, train = make_model(), make_train(seed)
        overrides = {}
        if model is None:  # Auto: model kind, seed and epochs are the user's; the rest follows its choice
            overrides, train = {"model.kind": model_kind, **train}, None
        cfg = RunConfig(dataset=ds.name, split=split, features=make_features(), model=model,
                        train=train, name=name.strip(), overrides=overrides)
        if split_method == KFOLD:
            prepare_run(cfg, folds=k, dataset=ds)
            cross_validate(cfg, k)
            return
        prepare_run(cfg, dataset=ds)
        if jobs.active_jobs():
            st.session_state[PENDING_KEY] = cfg
            return
        launch(cfg)


st.title("Train")
apply_preset()
ds, summary = current_dataset()
run_id, n_busy = None, 0
sidebar_dataset = st.session_state.get(DATASET_KEY)
with guard("Reading runs"):
    run_id, n_busy = run_panel.run_to_show(sidebar_dataset)
if run_id:
    if n_busy:
        if n_busy > 1:
            st.info(f"{n_busy} runs are in progress; the newest is shown. See them all on the Runs page.")
        run_panel.other_dataset_note(run_id, sidebar_dataset)
        run_panel.monitor(run_id)
    else:
        from audioclf.training import read_status

        # The sidebar's data set's last run: another data set's said nothing about this one.
        with st.expander(f"Last run on {sidebar_dataset}: {run_id} ({read_status(run_id).get('state', '?')})",
                         expanded=True):
            run_panel.show_status(run_id)
    st.divider()

if ds is None:
    st.stop()
st.caption(f"Data set {code(st.session_state.get(DATASET_KEY))}: {plural(len(ds.items), 'clip')}, "
           f"{plural(len(ds.labels), 'class')}. The settings start at the recommended ones for the chosen feature type.")
if len(ds.labels) < 2:
    st.error("Training needs at least two classes; this data set has "
             f"{len(ds.labels)}. Add clips of another class on the Data page.", icon=":material/error:")
elif not has_background(ds.labels):
    st.caption(":material/info: No background class: the model will name one of "
               f"{len(ds.labels)} classes for any sound. A class of background noise (Data page, "
               "Add clips, Background) lets it answer 'nothing of interest'; Predict can also say "
               "'not sure' below a confidence threshold.")

top = st.columns(4)
yamnet_missing = yamnet_reason()
eat_missing = efficientat_panel.reason()
pretrained = not yamnet_missing or not eat_missing
# Auto is the default even with no pretrained model here: it then trains MFCC and says so (with
# EfficientAT's download one click away), and picks a pretrained model once one is on the machine.
if st.session_state.get("tr_feat") not in FEATURE_CHOICES:
    st.session_state["tr_feat"] = next(n for n, k in FEATURE_CHOICES.items() if k == AUTO)
feature_kind = FEATURE_CHOICES[top[0].selectbox(
    "Features", list(FEATURE_CHOICES), key="tr_feat", help=AUTO_HELP,
    format_func=lambda n: n + feature_note(FEATURE_CHOICES[n], yamnet_missing, eat_missing))]
model_kind = top[1].selectbox("Model", KINDS, index=KINDS.index(DEFAULT_MODEL_KIND),
                              format_func=MODEL_NAMES.get, key="tr_model")
split_method = top[2].selectbox("Split", [*METHODS, KFOLD], format_func=SPLIT_CHOICES.get, key="tr_split")
blocked = ""  # why the chosen features cannot train here: said before Start, which is disabled
if feature_kind == "efficientat":
    _, blocked = efficientat_panel.choose_model(top[3])
elif feature_kind == "yamnet" and yamnet_missing:
    blocked = yamnet_missing
    st.warning(md(yamnet_missing), icon=":material/block:")
elif feature_kind == AUTO and not pretrained:
    st.info("Auto can only try MFCC here (YAMNet is not set up and no EfficientAT checkpoint is on this "
            "machine), so it trains MFCC. With a pretrained model it compares it too: pretrained models "
            "usually win on environmental sounds.", icon=":material/info:")
    efficientat_panel.offer_download("", key="tr_auto_eat_download")

# A stray Enter in a field must not start minutes of training: only the button does.
with st.form("train_form", enter_to_submit=False):
    cols = st.columns(4)
    with cols[0]:
        st.markdown("**Features**")
        make_features = feature_fields(feature_kind)
    with cols[1]:
        st.markdown("**Model**")
        make_model = model_fields(feature_kind, model_kind) if feature_kind != AUTO else auto_note()
    with cols[2]:
        st.markdown("**Training**")
        make_train = train_fields(feature_kind) if feature_kind != AUTO else auto_train_fields()
    with cols[3]:
        st.markdown("**Split**")
        make_split = split_fields(split_method)
        run_name = st.text_input("Run name (optional)", placeholder="e.g. gru-mfcc-baseline", key="tr_name")
    submitted = st.form_submit_button("Start training", type="primary", icon=":material/play_arrow:",
                                      disabled=bool(blocked), help=blocked or None)
if submitted:
    start(ds, make_features, make_model, make_train, make_split, run_name)
with guard("Reading runs"):
    pending_prompt()
cv = st.session_state.get("cv_result")
if cv:
    st.subheader(f"Last cross-validation ({cv['k']} folds)")
    c = st.columns(2)
    c[0].metric("Macro F1", f"{cv['macro_f1_mean']:.3f} ± {cv['macro_f1_std']:.3f}")
    c[1].metric("Accuracy", f"{cv['accuracy_mean']:.3f} ± {cv['accuracy_std']:.3f}")
    table = {"fold": list(range(1, cv["k"] + 1)), "macro F1": cv["macro_f1"],
             "accuracy": cv["accuracy"], "epochs": cv["epochs"] or [None] * cv["k"]}
    if cv.get("groups"):
        table = {"fold": table.pop("fold"), "held out": [", ".join(g) for g in cv["groups"]], **table}
    if cv.get("features"):
        table["features"] = cv["features"]
    st.dataframe(table, hide_index=True)
