"""Mixup (train.mixup): blended training batches with blended targets, the soft-target loss, its checks."""
from __future__ import annotations

import numpy as np
import pytest

from audioclf.model import ModelConfig
from audioclf.model.sequences import PAD_VALUE, SplitData, pad_sequences
from audioclf.training import RunConfig, TrainConfig, TrainingError
from audioclf.training import batching


def _clips(lengths, dims=3, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.normal(size=(n, dims)).astype(np.float32) for n in lengths]


def test_mix_blends_frames_both_clips_have_and_their_targets_alike():
    lengths = np.array([4, 6, 6, 5])
    x = _clips(lengths)
    xb = pad_sequences(x, 6)
    t = np.eye(3, dtype=np.float32)[[0, 1, 2, 1]]
    w = np.array([1.0, 2.0, 3.0, 4.0], np.float32)
    mixed, tm, wm = batching.mix(xb.copy(), lengths, t, w, 0.4, np.random.default_rng(3))
    assert np.allclose(tm.sum(1), 1.0)
    own = (tm * t).sum(1)  # the clip's own class keeps the larger share
    assert np.all(own >= 0.5 - 1e-6)
    assert not np.allclose(mixed, xb)  # something was blended
    for i, n in enumerate(lengths):
        assert np.all(mixed[i, n:] == PAD_VALUE)  # padding (the model's mask) untouched
        assert np.all(np.abs(mixed[i, :n]) < 100)  # no padding value leaked into a real frame
    # The same draws again: every clip is lam * x_i + (1 - lam) * x_j on the frames both have, and
    # its own frames past its partner's end.
    rng = np.random.default_rng(3)
    perm = rng.permutation(4)
    lam = rng.beta(0.4, 0.4, 4)
    lam = np.maximum(lam, 1 - lam)
    for i, n in enumerate(lengths):
        j, both = perm[i], min(n, lengths[perm[i]])
        assert np.allclose(mixed[i, :both], lam[i] * xb[i, :both] + (1 - lam[i]) * xb[j, :both], atol=1e-5)
        assert np.array_equal(mixed[i, both:n], xb[i, both:n])
        assert np.allclose(tm[i], lam[i] * t[i] + (1 - lam[i]) * t[j]) and np.isclose(wm[i], lam[i] * w[i] + (1 - lam[i]) * w[j])


def test_batches_give_indices_one_hot_rows_or_blends():
    x, y = _clips([5] * 8), np.array([0, 1, 2, 0, 1, 2, 0, 1])
    plain = list(batching.batches(x, y, None, 4, np.random.default_rng(0)))
    assert all(yb.dtype.kind == "i" and yb.ndim == 1 for _, yb in plain)
    val = list(batching.batches(x, y, None, 4, None, n_classes=3, mixup=0.4))  # no rng: never mixed
    assert all(set(np.unique(yb)) == {0.0, 1.0} and yb.shape == (4, 3) for _, yb in val)
    assert np.array_equal(np.concatenate([xb[:, :5] for xb, _ in val]), pad_sequences(x, 5))
    mixed = list(batching.batches(x, y, None, 4, np.random.default_rng(0), n_classes=3, mixup=0.4))
    rows = np.concatenate([yb for _, yb in mixed])
    assert np.allclose(rows.sum(1), 1.0) and ((rows > 0) & (rows < 1)).any()


def test_mixup_setting_is_checked_and_round_trips():
    for bad in (-0.1, 11, "much"):
        with pytest.raises(TrainingError, match="Mixup"):
            TrainConfig(mixup=bad)
    assert TrainConfig().mixup == 0.0 and TrainConfig(mixup="0.4").mixup == 0.4
    from audioclf.datasets import SplitConfig
    from audioclf.features import MFCCConfig

    cfg = RunConfig(dataset="d", split=SplitConfig(), features=MFCCConfig(), model=ModelConfig(),
                    train=TrainConfig(mixup=0.4))
    assert RunConfig.from_dict(cfg.to_dict()).train.mixup == 0.4


@pytest.mark.parametrize("members", [1, 2])
def test_a_model_trained_with_mixup_learns(members):
    """Soft targets through the whole fit: the loss takes probability rows, validation one-hot rows,
    and the model still separates three classes (an ensemble through its members' own losses)."""
    from audioclf.model import predict_proba
    from audioclf.training.fit import fit

    rng = np.random.default_rng(0)

    def data(n):
        y = np.arange(n) % 3
        x = [(rng.normal(size=(int(rng.integers(6, 10)), 4)) + 2.0 * np.eye(4)[c]).astype(np.float32) for c in y]
        return SplitData(x, y, [str(i) for i in range(n)])

    train, val, test = data(90), data(30), data(30)
    cfg = ModelConfig(kind="gru", rnn_units=(16,), dense_units=(), members=members, clip_norm=False)
    model, info = fit(cfg, TrainConfig(epochs=25, min_epochs=0, mixup=0.4, batch_size=16), train, val, 3)
    assert info["epochs_trained"] >= 1 and not info["cancelled"]
    acc = (predict_proba(model, test.x).argmax(1) == test.y).mean()
    assert acc >= 0.9, acc
