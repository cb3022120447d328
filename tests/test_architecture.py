"""The rules of the package's structure that no tool but a test can check (docs/architecture.md).

Which layer may import which is checked by import-linter (``lint-imports``,
pyproject.toml); these tests read the source for the rest: errors are a
contract, public callables say what they do, functions and modules stay short,
and nothing below the API reads the environment.
"""

from __future__ import annotations

import ast
import builtins
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import stashdb
from stashdb import errors

PACKAGE = Path(stashdb.__file__).parent
#: Raised on purpose although not in errors.__all__, and why that is right.
INTERNAL = {
    "Unpicklable": "pickling -> capture: becomes a skipped entry, never reaches a user",
    "ObjectsCollected": "storage -> Repo: the commit is prepared again",
    "UnpicklingError": "inside the unpickler: becomes a RestoreError",
    "UsageError": "IPython's own way for a magic to report a mistake (faces only)",
    "Exit": "typer's way for a command to set its exit status (faces only)",
    "PicklingError": "session files -> capture: a file not stored becomes a skipped entry",
    "WorkerDied": "session runners -> Session: it recovers, then raises WorkerCrashed",
    "WorkerTimedOut": "session runners -> Session: it recovers, then raises ExecutionTimeout",
    "Unsealable": "sealing -> chunking, queries, Store: becomes damage (CorruptChunk), "
                  "StoreDamaged, or KeyProblem for a wrong store key",
}
#: Builtins raised to keep a Python protocol (a mapping's KeyError, PEP 562).
PROTOCOL = {"KeyError", "AttributeError", "NotImplementedError"}
#: Faces may raise their frameworks' own errors.
FACES = ("cli", "ipython")
MAX_FUNCTION_LINES = 80
MAX_MODULE_LINES = 600


def modules() -> Iterator[tuple[Path, ast.Module]]:
    for path in sorted(PACKAGE.rglob("*.py")):
        yield path, ast.parse(path.read_text(), str(path))


def raised_names(tree: ast.AST) -> Iterator[tuple[int, str]]:
    for node in ast.walk(tree):
        if isinstance(node, ast.Raise) and node.exc is not None:
            exc = node.exc.func if isinstance(node.exc, ast.Call) else node.exc
            if isinstance(exc, ast.Name) and exc.id[:1].isupper():
                yield node.lineno, exc.id
            elif isinstance(exc, ast.Attribute) and exc.attr[:1].isupper():
                yield node.lineno, exc.attr  # typer.Exit, pickle.UnpicklingError


def test_every_error_raised_on_purpose_is_a_named_error_in_errors_all() -> None:
    wrong = []
    for path, tree in modules():
        face = path.relative_to(PACKAGE).parts[0] in FACES
        for line, name in raised_names(tree):
            allowed = (
                name in errors.__all__ or name in PROTOCOL or name.startswith("_")
                or (name in INTERNAL and (face or name not in ("UsageError", "Exit")))
            )
            if name == "StashError" or not allowed:
                wrong.append(f"{path.relative_to(PACKAGE)}:{line} raises {name}")
    assert wrong == []


def test_every_error_class_is_defined_in_errors_and_exported() -> None:
    defined_elsewhere = []
    for path, tree in modules():
        if path.name == "errors.py":
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef) and any(
                isinstance(b, ast.Name) and b.id.endswith(("Error", "StashError")) for b in node.bases
            ):
                defined_elsewhere.append(f"{path.relative_to(PACKAGE)}: {node.name}")
    assert defined_elsewhere == []
    for name in errors.__all__:
        assert getattr(stashdb, name) is getattr(errors, name)
        assert issubclass(getattr(errors, name), (errors.StashError, Warning)), name


def test_library_messages_quote_no_command_line_flags() -> None:
    # The library speaks in its own terms (keep_last=); the CLI adds its flags.
    quoted = []
    for path, tree in modules():
        if path.relative_to(PACKAGE).parts[0] in FACES:
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Raise):
                for const in ast.walk(node):
                    text = const.value if isinstance(const, ast.Constant) else None
                    if isinstance(text, str) and any(
                        w.startswith("--") and len(w) > 2 for w in text.split()
                    ):
                        quoted.append(f"{path.relative_to(PACKAGE)}:{node.lineno}")
    assert quoted == []


def test_every_public_exception_imports_without_sqlalchemy_dill_or_numpy(tmp_path: Path) -> None:
    code = (
        "import sys, stashdb\n"
        "from stashdb import errors\n"
        "classes = [getattr(stashdb, n) for n in errors.__all__]\n"
        "try:\n    raise stashdb.InvalidRefName('x')\nexcept stashdb.StashError:\n    pass\n"
        "print([m for m in ('sqlalchemy', 'dill', 'numpy') if m in sys.modules], len(classes))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["[]", str(len(errors.__all__))]


def _public_callables(tree: ast.Module) -> Iterator[ast.AST]:
    exported = None
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets
        ):
            try:
                exported = set(ast.literal_eval(node.value))
            except ValueError:  # built from other lists (stashdb/__init__.py): all public
                exported = None
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)) and not node.name.startswith("_"):
            if exported is not None and node.name not in exported:
                continue
            yield node
            if isinstance(node, ast.ClassDef):
                for member in node.body:
                    if isinstance(member, ast.FunctionDef) and not member.name.startswith("_"):
                        yield member


def test_every_public_callable_has_a_docstring() -> None:
    missing = []
    for path, tree in modules():
        for node in _public_callables(tree):
            assert isinstance(node, (ast.FunctionDef, ast.ClassDef))
            setter = any(
                isinstance(d, ast.Attribute) and d.attr in ("setter", "deleter")
                for d in getattr(node, "decorator_list", [])
            )
            if ast.get_docstring(node) is None and not setter:
                missing.append(f"{path.relative_to(PACKAGE)}:{node.lineno} {node.name}")
    assert missing == []


def _long_reason(source_lines: list[str], line: int) -> bool:
    """A comment ``# long: why`` on the line above a definition excuses its length."""
    return line >= 2 and source_lines[line - 2].strip().startswith("# long:")


def test_functions_and_modules_stay_short_or_say_why() -> None:
    too_long = []
    for path, tree in modules():
        lines = path.read_text().splitlines()
        if len(lines) > MAX_MODULE_LINES and not any(
            line.startswith("# long:") for line in lines[:40]
        ):
            too_long.append(f"{path.relative_to(PACKAGE)}: {len(lines)} lines")
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                first = min([node.lineno, *(d.lineno for d in node.decorator_list)])
                length = (node.end_lineno or node.lineno) - first + 1
                if length > MAX_FUNCTION_LINES and not _long_reason(lines, first):
                    too_long.append(f"{path.relative_to(PACKAGE)}:{node.lineno} {node.name}")
    assert too_long == []


@pytest.mark.parametrize("layer", ["storage", "pickling", "workspace", "repo.py", "background.py"])
def test_nothing_below_the_api_reads_the_environment(layer: str) -> None:
    files = [PACKAGE / layer] if layer.endswith(".py") else sorted((PACKAGE / layer).rglob("*.py"))
    reads = []
    for path in files:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute) and node.attr in ("environ", "getenv", "getcwd"):
                reads.append(f"{path.relative_to(PACKAGE)}:{node.lineno} {node.attr}")
            if isinstance(node, ast.Attribute) and node.attr == "cwd":
                reads.append(f"{path.relative_to(PACKAGE)}:{node.lineno} cwd")
    assert reads == []


def test_the_internal_exceptions_listed_above_exist() -> None:
    found = {name for _, tree in modules() for _, name in raised_names(tree)}
    assert set(INTERNAL) <= found | set(dir(builtins))


def _example_arguments(cls: type) -> list[object]:
    """Arguments of the right kinds for an error's __init__ (strings, numbers, lists)."""
    import inspect

    made: list[object] = []
    for parameter in list(inspect.signature(cls.__init__).parameters.values())[1:]:
        if parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
            continue
        if parameter.default is not parameter.empty:
            break
        hint = str(parameter.annotation)
        if "list" in hint:
            made.append(["a", "b"])
        elif "float" in hint:
            made.append(1.5)
        elif "int" in hint:
            made.append(3)
        else:
            made.append(f"{parameter.name}-value")
    return made or ["message"]


@pytest.mark.parametrize("name", sorted(n for n in errors.__all__ if n != "VersionMismatchWarning"))
def test_every_public_error_pickles_and_comes_back_whole(name: str) -> None:
    import pickle

    cls = getattr(errors, name)
    error = cls(*_example_arguments(cls))
    back = pickle.loads(pickle.dumps(error))
    assert type(back) is cls and str(back) == str(error)
    assert back.__dict__ == error.__dict__ and back.args == error.args
