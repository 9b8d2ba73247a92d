"""Every Python and shell example of README.md and docs/ runs, in order, with sybil.

The conventions (docs/contributing.md says the same to authors):

* A ```python block runs in one namespace per page, in order; what it prints is
  kept. A ```text block right after ``<!-- test: output -->`` must match what the
  last Python block printed (doctest rules: ``...`` matches anything).
* A ```bash block runs line by line in a scratch folder that holds links to the
  checkout's bench/, tools/, tests/, examples/ and docs/; every line must exit 0.
  ``pip install`` lines are not run (the tests run inside an installed
  environment; .ci/run runs the README's install commands in a fresh one), and a
  ``pip install ... &&`` in front of a command is dropped.
* A run that would take too long is shortened by markers right above the block,
  ``<!-- test: replace "OLD" with "NEW" -->``, applied to the block's text before
  it runs: fewer epochs, a slice of the data, ``--quick``. The page shows the
  book's command; the test runs the same command made smaller.
"""
import contextlib
import doctest
import io
import os
import pathlib
import re
import shlex
import subprocess

import pytest

sybil = pytest.importorskip("sybil")
from sybil.parsers.markdown import CodeBlockParser  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md"] + sorted((ROOT / "docs").glob("**/*.md"))
LINKED = ["bench", "tools", "tests", "examples", "docs", "pyproject.toml", "README.md",
          "mkdocs.yml"]
_MARKER = re.compile(r"^<!--\s*test:(.*?)-->\s*$")


def markers(example):
    """The ``<!-- test: ... -->`` lines right above the example's fence, top to bottom."""
    lines = example.document.text[:example.region.start].rstrip("\n").split("\n")
    found = []
    while lines and _MARKER.match(lines[-1].strip()):
        found.append(shlex.split(_MARKER.match(lines.pop().strip()).group(1)))
    return found[::-1]


def reduced(example):
    source = example.parsed
    for words in markers(example):
        if words[0] == "replace":
            if len(words) != 4 or words[2] != "with":
                raise ValueError("expected <!-- test: replace \"OLD\" with \"NEW\" -->, got %r"
                                 % words)
            if words[1] not in source:
                raise ValueError("%r is not in the block it should shorten" % words[1])
            source = source.replace(words[1], words[3])
        elif words != ["output"]:
            raise ValueError("unknown test marker %r" % words)
    return source


def run_python(example):
    namespace = example.namespace
    code = compile(reduced(example), str(example.path), "exec")
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        exec(code, namespace)
    namespace["__last_stdout__"] = buf.getvalue()


def check_output(example):
    if ["output"] not in markers(example):
        return
    got = example.namespace.get("__last_stdout__", "")
    want = example.parsed
    checker = doctest.OutputChecker()
    flags = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE
    if not checker.check_output(want, got, flags):
        raise AssertionError("the page shows:\n%s\nthe code printed:\n%s" % (want, got))


def shell_lines(source):
    for line in source.splitlines():
        line = re.sub(r"\s+#.*$", "", line).strip()
        if not line or line.startswith("#"):
            continue
        line = re.sub(r"^(python -m )?pip install [^&]*&&\s*", "", line)
        if re.match(r"^(python -m )?pip install ", line):
            continue
        yield line


def run_bash(example):
    workdir = example.namespace["__workdir__"]
    for line in shell_lines(reduced(example)):
        proc = subprocess.run(["bash", "-c", line], cwd=workdir, capture_output=True,
                              text=True, env=example.namespace["__env__"], timeout=300)
        if proc.returncode != 0:
            raise AssertionError("%s exited with %d:\n%s\n%s" % (
                line, proc.returncode, proc.stdout[-3000:], proc.stderr[-3000:]))


PARSERS = [CodeBlockParser("python", run_python), CodeBlockParser("text", check_output),
           CodeBlockParser("bash", run_bash)]


def test_markers_and_shell_lines():
    assert list(shell_lines("pip install -e . && python -m nndl_fast train  # note\n"
                            "pip install nndl_fast\n\n# comment\npytest")) == [
        "python -m nndl_fast train", "pytest"]


@pytest.mark.parametrize("page", PAGES, ids=[str(p.relative_to(ROOT)) for p in PAGES])
def test_page_examples(page, tmp_path):
    if os.environ.get("NNDL_FAST_DOCS_EXAMPLE"):
        pytest.skip("inside a documentation example (a page's own pytest command)")
    for name in LINKED:
        if (ROOT / name).exists():
            (tmp_path / name).symlink_to(ROOT / name)
    env = dict(os.environ)
    env["MPLBACKEND"] = "Agg"
    env["NNDL_FAST_DOCS_EXAMPLE"] = "1"
    document = sybil.Sybil(PARSERS).parse(page)
    document.namespace.update(__workdir__=str(tmp_path), __env__=env)
    examples = list(document)
    old = os.getcwd()
    os.chdir(tmp_path)
    try:
        for example in examples:
            try:
                example.evaluate()
            except Exception as exc:
                raise AssertionError("%s, line %d: %s" % (page.name, example.line, exc)) from exc
    finally:
        os.chdir(old)
