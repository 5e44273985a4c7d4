"""Every docstring example in the library runs.

Examples written as doctests (``>>>``) run with their shown output checked. The
other examples show calls on a user's own files ("dog.wav", a data set folder),
which cannot run here: each must still be valid Python, and every
``from audioclf... import ...`` line in it must import (a name that moved away
fails here).
"""
from __future__ import annotations

import ast
import doctest
import importlib
import pkgutil
import re
import textwrap

import pytest

import audioclf

SKIP = ("audioclf.model.layers",)  # imports TensorFlow; its example is run by test_core
IMPORT = re.compile(r"^\s*(from audioclf[\w.]* import [^#\n]+|import audioclf[\w.]*)", re.M)


def _modules() -> list[str]:
    names = ["audioclf"] + [m.name for m in pkgutil.walk_packages(audioclf.__path__, "audioclf.")]
    return [n for n in names if n not in SKIP and not n.endswith("__main__")]


def _docstrings(module) -> list[tuple[str, str]]:
    tree = ast.parse(importlib.util.find_spec(module.__name__).loader.get_source(module.__name__))
    out = [(module.__name__, ast.get_docstring(tree, clean=True) or "")]
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            out.append((f"{module.__name__}.{node.name}", ast.get_docstring(node, clean=True) or ""))
    return out


def _examples(doc: str) -> list[str]:
    """Code examples: the paragraphs that import something, in indented blocks after a line ending
    in '::' or starting with an audioclf import."""
    blocks, lines, i = [], doc.splitlines(), 0
    while i < len(lines):
        starts = lines[i].rstrip().endswith("::") or (lines[i].startswith("    ") and IMPORT.match(lines[i])
                                                       and (i == 0 or not lines[i - 1].startswith("    ")))
        if not starts:
            i += 1
            continue
        j = i + 1 if lines[i].rstrip().endswith("::") else i
        block = []
        while j < len(lines) and (not lines[j].strip() or lines[j].startswith("    ")):
            block.append(lines[j])
            j += 1
        # A literal block may also hold a file layout or a formula: the code is the
        # paragraphs (blank-line separated) that import something.
        for para in re.split(r"\n\s*\n", textwrap.dedent("\n".join(block))):
            para = para.strip()
            if para and not para.startswith(">>>") and re.search(r"^\s*(from \S+ )?import ", para, re.M):
                blocks.append(para)
        i = j
    return blocks


@pytest.mark.parametrize("name", _modules())
def test_doctests_run(name):
    module = importlib.import_module(name)
    finder, runner = doctest.DocTestFinder(exclude_empty=True), doctest.DocTestRunner(verbose=False)
    for test in finder.find(module, name):
        if test.examples:
            runner.run(test)
    assert runner.failures == 0, f"{runner.failures} doctest failure(s) in {name} (run pytest -s to see them)"


@pytest.mark.parametrize("name", _modules())
def test_examples_are_python_and_their_imports_work(name):
    module = importlib.import_module(name)
    problems = []
    for where, doc in _docstrings(module):
        for example in _examples(doc):
            code = example  # "RunConfig(...)" (elided arguments) is valid Python too
            try:
                ast.parse(code)
            except SyntaxError as e:
                problems.append(f"{where}: not Python ({e.msg}): {example.splitlines()[0]}")
                continue
            for line in IMPORT.findall(code):
                try:
                    exec(line.strip(), {})
                except ImportError as e:
                    problems.append(f"{where}: {line.strip()} -> {e}")
    assert not problems, "\n".join(problems)


def test_the_checker_finds_a_moved_name():
    doc = "Example::\n\n    from audioclf.training.defaults import train_defaults\n    train_defaults('mfcc')\n"
    [example] = _examples(doc)
    with pytest.raises(ImportError):
        exec(IMPORT.findall(example)[0].strip(), {})
