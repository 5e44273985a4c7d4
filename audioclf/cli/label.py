"""`label`: cut, group and name a folder of unlabelled recordings; optionally save a data set."""
from __future__ import annotations

import argparse
from pathlib import Path

from .common import EXIT_OK, CLIError, Command, ProgressBar, add_format_argument, err, write_rows

CUTS = ("events", "fixed", "whole")
EMBEDDER_CHOICES = ("auto", "efficientat", "yamnet", "mfcc")


def label_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("folder", metavar="DIR", help="a folder of recordings (searched recursively), or one file")
    p.add_argument("--k", type=int, help="number of groups (default: estimated by silhouette)")
    p.add_argument("--cut", choices=CUTS, default="events",
                   help="sound events, fixed windows, or each file as one clip (default: events)")
    p.add_argument("--length", type=float, default=2.0, help="fixed window length in seconds (default: 2)")
    p.add_argument("--hop", type=float, help="fixed window hop in seconds (default: the length)")
    p.add_argument("--embedder", choices=EMBEDDER_CHOICES, default="auto",
                   help="what embeds the clips (default: auto, the best available)")
    p.add_argument("--session", help="the session's name (default: the folder's)")
    p.add_argument("--out", metavar="NAME", help="save the groups as a workspace data set called NAME")
    add_format_argument(p)


def run_label(args: argparse.Namespace) -> int:
    from ..labelling import session as lab
    from ..labelling.saving import save_dataset
    from ..labelling.segmenting import CutConfig

    folder = Path(args.folder).expanduser()
    if not folder.exists():
        raise CLIError(f"{folder} does not exist; give a folder of recordings (or an audio file).")
    if args.k is not None and args.k < 1:
        raise CLIError(f"--k must be a positive number of groups, got {args.k}.")
    cut = CutConfig(method=args.cut, length=args.length, hop=args.hop)
    name = args.session or lab.unique_name(folder.resolve().stem or "recordings")
    bars: dict[str, ProgressBar] = {}

    def progress(stage: str, done: int, total: int) -> None:
        bars.setdefault(stage, ProgressBar(stage, args.quiet))(done, total)

    s = lab.create_session(name, [folder], cut=cut, embedder=args.embedder, k=args.k, progress=progress)
    for path, why in s.problems[:10]:
        err(f"skipped {path}: {why}")
    err(f"session {s.name}: {len(s.clips)} clips from {len({c.recording for c in s.clips})} recording(s), "
        f"{len(s.groups)} groups by {s.settings['embedder']} ({s.settings['k_reason'].split('. ')[0]}); "
        "name, merge, split and save them on the app's Label page")
    rows = [{"group": g.id, "clips": len(s.members(g.id)), "spread": g.spread, "suggested": g.suggested,
             "tags": "; ".join(f"{t} {v:.2f}" for t, v in g.tags),
             "examples": " ".join(s.clip_path(s.clip(e)).name for e in g.examples)} for g in s.groups]
    write_rows(rows, args.format)
    if args.out:
        saved = save_dataset(s, args.out)
        err(f"saved {sum(saved.counts.values())} clips in {len(saved.counts)} classes (the suggested names) "
            f"to {saved.path}; each clip's recording is its group")
    return EXIT_OK


LABEL = Command("label", "cut, group and name a folder of unlabelled recordings",
                "Cut the recordings in a folder into clips (sound events above each recording's noise floor, "
                "fixed windows, or each file whole), embed them with the best pretrained model available "
                "(EfficientAT, YAMNet, else MFCC summaries), group them (k given or estimated) and print each "
                "group with its spread, suggested name (AudioSet tags) and most typical clips. The session is "
                "kept in the workspace for the app's Label page; --out saves it at once as a data set with "
                "the suggested names.", label_arguments, run_label)

COMMANDS = (LABEL,)
