"""One name per concept in the library: a top-level public name is defined in one module only.

Parsed with ast (nothing is imported). A definition is a top-level ``def``, ``class`` or
assignment; importing a name from its home is not one. The few names several modules
define on purpose are listed below, each with the modules that may define it, and why.
"""
from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "audioclf"

# The bundle's predict.py is this file, copied into every export; it runs where audioclf is
# not installed, so it keeps its own copies of the feature code (tests/test_export.py holds
# its features equal to audioclf's). Its names are not checked here.
STANDALONE = "audioclf.export.standalone"

# Names that more than one module defines on purpose: {name: the modules that may define it}.
SHARED_NAMES = {
    # One interface per feature backend: YAMNet (features.yamnet) and EfficientAT
    # (features.efficientat.*) answer the same questions under the same names, so code that
    # has chosen a backend calls `backend.load_model()`, `backend.availability()`, ...
    "SAMPLE_RATE": {"audioclf.features.yamnet", "audioclf.features.efficientat.params"},
    "NUM_CLASSES": {"audioclf.features.yamnet", "audioclf.features.efficientat.params"},
    "availability": {"audioclf.features.yamnet", "audioclf.features.efficientat.weights"},
    "how_to_provide": {"audioclf.features.yamnet", "audioclf.features.efficientat.weights"},
    "check_source": {"audioclf.features.yamnet", "audioclf.features.efficientat.weights"},
    "top_classes": {"audioclf.features.yamnet", "audioclf.features.efficientat.model"},
    "num_frames": {"audioclf.features.yamnet", "audioclf.features.efficientat.frontend"},
    # ... and the frame clock of every feature type, the librosa ones (features.spectral) too.
    "frame_times": {"audioclf.features.spectral", "audioclf.features.yamnet", "audioclf.features.efficientat.frontend"},
    # "The model this module is about": a backend's network, or a training run's Keras model.
    "load_model": {"audioclf.features.yamnet", "audioclf.features.efficientat.model", "audioclf.training.runs"},
    # The job protocol reads and writes a job's status by its folder (jobs); each kind of job
    # offers the same two by its id (a training run, a tuning study).
    "read_status": {"audioclf.jobs", "audioclf.training.runs", "audioclf.tuning.studies"},
    "update_status": {"audioclf.jobs", "audioclf.training.runs", "audioclf.tuning.studies"},
    # What a module hands its package under one name: each command group's commands (the CLI
    # collects every group's COMMANDS), each model module's Keras classes for safe-mode
    # loading (model.building merges every CUSTOM_OBJECTS).
    "COMMANDS": {f"audioclf.cli.{g}" for g in ("app", "data", "engines", "label", "predict", "runs", "train",
                                                "tune")},
    "CUSTOM_OBJECTS": {"audioclf.model.layers", "audioclf.model.backbone"},
    # Entry points: the console script and the `python -m` modules of the two kinds of job.
    "main": {"audioclf.cli", "audioclf.training.__main__", "audioclf.tuning.__main__"},
}


def _module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _defined_names(tree: ast.Module) -> list[str]:
    names = []
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.append(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            for target in node.targets if isinstance(node, ast.Assign) else [node.target]:
                elts = target.elts if isinstance(target, ast.Tuple) else [target]
                names += [e.id for e in elts if isinstance(e, ast.Name)]
    return [n for n in names if not n.startswith("_")]


def definitions(package: Path = PACKAGE, skip: tuple[str, ...] = (STANDALONE,)) -> dict[str, set[str]]:
    """{public top-level name: the modules defining it} for every module of ``package``."""
    out: dict[str, set[str]] = defaultdict(set)
    for path in sorted(package.rglob("*.py")):
        module = _module_name(path, package.parent)
        if module in skip:
            continue
        for name in _defined_names(ast.parse(path.read_text(), str(path))):
            out[name].add(module)
    return dict(out)


def repeats(defs: dict[str, set[str]], shared: dict[str, set[str]]) -> list[str]:
    """Names defined in more than one module and not allowed to be (in those modules)."""
    return sorted(f"{name}: {', '.join(sorted(mods))}" for name, mods in defs.items()
                  if len(mods) > 1 and not mods <= shared.get(name, set()))


def test_no_public_name_is_defined_in_two_library_modules():
    assert repeats(definitions(), SHARED_NAMES) == []


def test_every_shared_name_is_still_shared():
    """The allow-list holds only names that several modules do define (a stale entry is removed)."""
    defs = definitions()
    assert {n for n in SHARED_NAMES if len(defs.get(n, ())) < 2} == set()


def test_the_checker_sees_a_name_defined_twice(tmp_path):
    pkg = tmp_path / "audioclf"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("KINDS = ('x',)\nSR, _hidden = 16000, 1\ndef load_model():\n    pass\n")
    (pkg / "sub" / "__init__.py").write_text("from audioclf.a import KINDS\n")  # an import is not a definition
    (pkg / "sub" / "b.py").write_text("KINDS: tuple = ('y',)\n_hidden = 2\nclass load_model:\n    pass\nSR = 8000\n")
    defs = definitions(pkg, skip=())
    assert repeats(defs, {}) == ["KINDS: audioclf.a, audioclf.sub.b", "SR: audioclf.a, audioclf.sub.b",
                                 "load_model: audioclf.a, audioclf.sub.b"]
    assert repeats(defs, {"load_model": {"audioclf.a", "audioclf.sub.b"}, "SR": {"audioclf.a"}}) == [
        "KINDS: audioclf.a, audioclf.sub.b", "SR: audioclf.a, audioclf.sub.b"]


def test_the_feature_configs_agree_with_their_networks():
    """features.configs cannot import the networks' modules (they import it), so it states their
    input rates and the default checkpoint again: they must be the same values."""
    from audioclf.features import EfficientATConfig, YAMNetConfig, configs, yamnet
    from audioclf.features.efficientat import params

    assert configs.YAMNET_SR == YAMNetConfig.sr == yamnet.SAMPLE_RATE
    assert configs.YAMNET_DIMS == yamnet.EMBEDDING_DIM
    assert configs.EFFICIENTAT_SR == EfficientATConfig.sr == params.SAMPLE_RATE
    assert configs.EFFICIENTAT_DEFAULT == EfficientATConfig().model == params.DEFAULT_MODEL
