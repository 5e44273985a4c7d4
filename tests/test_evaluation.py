"""Evaluation metrics against scikit-learn on a hand-made example, and k-fold cross-validation."""
from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, classification_report, confusion_matrix, f1_score

from audioclf.datasets import SplitConfig
from audioclf.evaluation import EvaluationError, Metrics, evaluate
from audioclf.training import cross_validate
from audioclf.features import MFCCConfig
from audioclf.model import ModelConfig
from audioclf.training import RunConfig, TrainConfig

LABELS = ["cat", "dog", "bird"]
# 8 clips: true classes and hand-made probabilities (argmax = predicted class).
Y_TRUE = [0, 0, 0, 1, 1, 1, 2, 2]
Y_PROB = np.array([
    [0.8, 0.1, 0.1],  # cat  -> cat
    [0.6, 0.3, 0.1],  # cat  -> cat
    [0.2, 0.7, 0.1],  # cat  -> dog  (wrong, 0.7)
    [0.1, 0.8, 0.1],  # dog  -> dog
    [0.1, 0.5, 0.4],  # dog  -> dog
    [0.05, 0.05, 0.9],  # dog -> bird (wrong, 0.9)
    [0.1, 0.2, 0.7],  # bird -> bird
    [0.3, 0.3, 0.4],  # bird -> bird
])
PRED = Y_PROB.argmax(1)


def test_metrics_match_sklearn():
    m = evaluate(Y_TRUE, Y_PROB, LABELS, paths=[f"c{i}.wav" for i in range(8)])
    assert m.accuracy == pytest.approx(accuracy_score(Y_TRUE, PRED)) == pytest.approx(6 / 8)
    assert m.macro_f1 == pytest.approx(f1_score(Y_TRUE, PRED, average="macro"))
    report = classification_report(Y_TRUE, PRED, target_names=LABELS, output_dict=True)
    for lab in LABELS:
        for key, sk in (("precision", "precision"), ("recall", "recall"), ("f1", "f1-score")):
            assert m.per_class[lab][key] == pytest.approx(report[lab][sk])
        assert m.per_class[lab]["support"] == report[lab]["support"]
    assert np.array_equal(m.confusion, confusion_matrix(Y_TRUE, PRED))
    assert m.confusion == ((2, 1, 0), (0, 2, 1), (0, 0, 2))
    assert np.allclose(np.sum(m.confusion_normalized, axis=1), 1.0)
    assert m.confusion_normalized[0] == pytest.approx((2 / 3, 1 / 3, 0.0))
    # Most confident mistakes first.
    assert [(x["path"], x["true"], x["predicted"]) for x in m.misclassified] == [
        ("c5.wav", "dog", "bird"), ("c2.wav", "cat", "dog")]
    assert m.misclassified[0]["confidence"] == pytest.approx(0.9)


def test_labels_as_names_and_json_round_trip():
    names = [LABELS[i] for i in Y_TRUE]
    m = evaluate(names, Y_PROB, LABELS)
    assert m == evaluate(Y_TRUE, Y_PROB, LABELS)
    assert Metrics.from_dict(m.to_dict()) == m


def test_class_never_predicted_scores_zero_not_crash():
    probs = np.tile([0.9, 0.05, 0.05], (8, 1))
    m = evaluate(Y_TRUE, probs, LABELS)
    assert m.per_class["dog"]["precision"] == 0.0 and m.per_class["cat"]["recall"] == 1.0


def test_bad_inputs_raise_evaluation_error():
    with pytest.raises(EvaluationError, match="shape"):
        evaluate(Y_TRUE, Y_PROB[:, :2], LABELS)
    with pytest.raises(EvaluationError, match="Unknown class"):
        evaluate(["cat"] * 7 + ["cow"], Y_PROB, LABELS)
    with pytest.raises(EvaluationError, match="no clips"):
        evaluate([], np.zeros((0, 3)), LABELS)


def test_cross_validation_on_fsdd_small(fsdd_small):
    cfg = RunConfig(dataset=str(fsdd_small), split=SplitConfig(val=0.2, test=0.0, seed=1),
                    features=MFCCConfig(), model=ModelConfig(kind="baseline", dense_units=(16,)),
                    train=TrainConfig(epochs=15, patience=None, batch_size=8, learning_rate=5e-3,
                                      warp_augment=()))
    events = []
    res = cross_validate(cfg, k=3, progress=events.append)
    assert res.k == 3 and len(res.macro_f1) == 3 and len(res.accuracy) == 3
    assert all(0.0 <= f <= 1.0 for f in res.macro_f1)
    assert res.macro_f1_mean == pytest.approx(np.mean(res.macro_f1))
    assert res.accuracy_std == pytest.approx(np.std(res.accuracy))
    assert res.accuracy_mean > 0.5  # three spoken digits: far above chance (1/3)
    assert sum(e["phase"] == "fold" for e in events) == 3
    with pytest.raises(EvaluationError, match="k must be"):
        cross_validate(cfg, k=1)
