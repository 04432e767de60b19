"""The commands the README and docs/ show keep working: every ``dgm ...`` line in their code blocks parses
with today's CLI, names a registered model and dataset, and passes only options the model accepts.

Parsing only (no training): a documented command that breaks when a flag or option is renamed is caught
here, not by a user pasting it.
"""

import inspect
import re
import shlex
from pathlib import Path

import pytest

from dgm.cli import _model_options, _parser
from dgm.core.registry import get_entry
from dgm.data.registry import dataset_info

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def fenced_blocks(path: Path, language: str = "[a-z]*") -> list[str]:
    """The contents of the fenced code blocks of ``path`` whose info string matches ``language``."""
    return re.findall(rf"```{language}\n(.*?)```", path.read_text(), re.S)


def documented_commands() -> list[tuple[str, str]]:
    """(file, command) for every line starting with ``dgm `` in a fenced code block, continuations joined
    and trailing ``# comments`` dropped."""
    found = []
    for path in DOCS:
        for block in fenced_blocks(path):
            for line in re.sub(r"\\\n\s*", " ", block).splitlines():
                line = line.strip()
                if line.startswith("dgm "):
                    found.append((path.name, re.split(r"\s+#", line)[0].strip()))
    return found


COMMANDS = documented_commands()


def test_the_docs_show_commands():
    # Guards the extraction itself: the README's CLI tour alone has a couple of dozen.
    assert len(COMMANDS) >= 20
    assert {name for name, _ in COMMANDS} >= {"README.md"}


@pytest.mark.parametrize(("where", "command"), COMMANDS, ids=[f"{w}:{c[:60]}" for w, c in COMMANDS])
def test_documented_command_is_valid(where, command):
    argv = shlex.split(command)[1:]
    parser = _parser()
    try:
        args, extra = parser.parse_known_args(argv)
    except SystemExit as e:  # argparse's own error, already printed
        pytest.fail(f"{where}: `{command}` does not parse (exit {e.code})")
    if args.command not in ("train", "bench"):
        assert not extra, f"{where}: `{command}`: unrecognised {extra}"
    else:  # model options go to the model (`dgm bench`: to each one named)
        options = _model_options(extra)
        names = [args.model] if args.command == "train" else [m for m in args.models if m != "all"]
        for name in names:
            entry = get_entry(name)
            signature = inspect.signature(entry.cls.__init__).parameters.values()
            if not any(p.kind is p.VAR_KEYWORD for p in signature):
                unknown = set(options) - set(entry.options())
                assert not unknown, f"{where}: `{command}`: {name} has no option(s) {sorted(unknown)}"
    data = getattr(args, "data", None) or []
    for name in [data] if isinstance(data, str) else data:  # `dgm classify` takes several
        dataset_info(name)  # raises for an unknown dataset name


def test_readme_python_tour_runs(tmp_path, monkeypatch):
    # The README's first Python block is the tour a new user pastes: it must run as written (embedded
    # data, a few seconds), from a fresh directory, with its outputs under runs/x there.
    block = fenced_blocks(ROOT / "README.md", "python")[0]
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(block, "README.md", "exec"), namespace)
    assert (tmp_path / "runs" / "x" / "model.safetensors").is_file()
    assert namespace["samples"].shape[0] == 64


PYTHON_BLOCKS = [
    (path.name, i, block) for path in DOCS for i, block in enumerate(fenced_blocks(path, "python"))
]


@pytest.mark.parametrize(
    ("where", "index", "block"), PYTHON_BLOCKS, ids=[f"{w}:{i}" for w, i, _ in PYTHON_BLOCKS]
)
def test_documented_python_compiles_and_its_imports_exist(where, index, block):
    # Most blocks need trained runs or minutes of training, so only their syntax and imports are checked:
    # a renamed function breaks the import here.
    import ast

    tree = ast.parse(block, filename=f"{where} block {index}")
    imports = [node for node in tree.body if isinstance(node, ast.Import | ast.ImportFrom)]
    exec(compile(ast.Module(body=imports, type_ignores=[]), f"{where} block {index}", "exec"), {})
