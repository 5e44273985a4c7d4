"""The command line's structure: options derived from the config dataclasses, and the registry of
command groups. Parsing only (no training, no audio), so these run in seconds."""
from __future__ import annotations

import contextlib
import dataclasses
import io
import sys
import types
import typing
from pathlib import Path

import pytest

from audioclf import cli
from audioclf.cli import options
from audioclf.datasets import SplitConfig
from audioclf.features import MFCCConfig, SpectralConfig
from audioclf.model import ModelConfig
from audioclf.training import TrainConfig
from audioclf.training.config import train_defaults
from audioclf.training.defaults import FEATURE_KINDS, model_defaults

CONFIGS = {"features": (MFCCConfig, SpectralConfig), "split": (SplitConfig,), "model": (ModelConfig,),
           "train": (TrainConfig,)}


def run_cli(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = cli.main(list(argv))
        except SystemExit as e:
            code = e.code
    return code, out.getvalue(), err.getvalue()


def _another(value, tp, choices):
    """A valid value of a field other than its default, and how to type it."""
    if choices:
        other = next(c for c in choices if c != value)
        return other, other
    if tp is bool:
        return (not value), None
    if isinstance(value, tuple):
        other = tuple(2 * v if isinstance(v, int) else v for v in value[:1]) or (32,)
        return other, ",".join(map(str, other))
    if value is None:  # MFCCConfig.fmax (the top of the mel bank), SplitConfig.group_pattern
        return (4000.0, "4000") if float in typing.get_args(tp) else (r"^(\w+)_", r"^(\w+)_")
    other = value * 2 if isinstance(value, int) else value / 2
    return (other or 1), str(other or 1)


@pytest.mark.parametrize("part", CONFIGS)
def test_every_config_field_is_an_option_that_reaches_the_config(part):
    """Each field (not HIDDEN) has an option; typing another value lands in the config."""
    hidden = options.HIDDEN.get(part, set())
    names = {f.name for cls in CONFIGS[part] for f in dataclasses.fields(cls)} - hidden
    flags = options.option_flags(part)
    assert set(flags) == names
    parser = cli.build_parser()
    actions = {a.dest: a for a in parser._subparsers._group_actions[0].choices["train"]._actions}
    for cls in CONFIGS[part]:
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            if f.name in hidden:
                continue
            action = next(a for a in actions.values() if flags[f.name] in a.option_strings)
            expected, text = _another(f.default, hints[f.name], action.choices)
            flag = flags[f.name] if text is not None or expected else "--no-" + flags[f.name][2:]
            argv = ["train", "d", *((flag, text) if text is not None else (flag,))]
            if part == "features":
                argv += ["--features", cls.kind]
            args = parser.parse_args(argv)
            made = {"features": options.feature_config, "split": options.split_config,
                    "model": options.model_config, "train": options.train_config}[part](args)
            assert getattr(made, f.name) == expected, (argv, made)
            if part in ("model", "train"):
                assert options.overrides(args) == {f"{part}.{f.name}": expected}


def test_help_shows_each_feature_types_defaults():
    _, out, _ = run_cli("train", "--help")
    text = " ".join(out.split())
    per_kind = ", ".join(f"{k} {train_defaults(k).min_epochs}" for k in FEATURE_KINDS)
    assert f"(default: {per_kind})" in text  # min_epochs differs between feature types
    masks = ", ".join(f"{k} {model_defaults(k).time_mask}" for k in FEATURE_KINDS)
    assert f"(default: {masks})" in text
    assert f"(default: {ModelConfig().feature_mask})" in text  # the same for every type: one value
    assert f"(default: mfcc {MFCCConfig().n_mfcc}, spectral {SpectralConfig().n_mfcc})" in text
    assert "mfcc: append delta" in text  # a field only MFCCConfig has says so


def test_a_feature_option_of_another_type_is_one_line():
    code, out, err = run_cli("train", "d", "--features", "spectral", "--deltas")
    assert code == 1 and out == "" and err.count("\n") == 1
    assert "--deltas applies to mfcc features only" in err
    code, _, err = run_cli("train", "d", "--fmax", "high")
    assert code == 2 and "expected a number or 'none'" in err and "Traceback" not in err


def test_each_command_lives_in_its_groups_module():
    seen = []
    for group in cli.GROUPS:
        module = sys.modules.get(f"audioclf.cli.{group}") or __import__(f"audioclf.cli.{group}", fromlist=["x"])
        for command in module.COMMANDS:
            assert command.run.__module__ == command.arguments.__module__ == module.__name__
            seen.append(command.name)
    assert len(seen) == len(set(seen))
    assert set(seen) >= {"extract", "train", "evaluate", "predict", "runs", "check", "tune", "studies",
                         "export", "demo", "download-esc50", "app"}


def test_a_new_group_is_one_module_and_one_registry_line(monkeypatch):
    def arguments(p):
        p.add_argument("who")
        cli.common.add_format_argument(p)

    def run(args):
        if args.who == "nobody":
            raise cli.CLIError("Nobody to greet.")
        cli.common.write_rows([{"hello": args.who}], args.format)
        return 0

    module = types.ModuleType("audioclf.cli.hello")
    module.COMMANDS = (cli.Command("hello", "say hello", "Print a greeting.", arguments, run),)
    monkeypatch.setitem(sys.modules, "audioclf.cli.hello", module)
    monkeypatch.setattr(cli, "GROUPS", (*cli.GROUPS, "hello"))
    assert run_cli("hello", "world", "--format", "csv")[:2] == (0, "hello\nworld\n")
    code, _, err = run_cli("hello", "nobody")
    assert code == 1 and err == "audioclf hello: error: Nobody to greet.\n"
    assert "hello" in run_cli("--help")[1]


def test_no_cli_module_is_over_500_lines():
    for path in Path(cli.__file__).parent.glob("*.py"):
        assert len(path.read_text().splitlines()) <= 500, path.name
