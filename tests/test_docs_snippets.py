"""Every code block of README.md and of docs/ runs as written, on its own.

Fenced blocks whose info string is ``python`` run in a fresh interpreter (cwd: a fresh temporary
directory); ``bash`` blocks run with ``bash -e -o pipefail`` from the repository root (they call
``examples/...``). Other languages (``text``, ``toml``, MyST directives such as ``{eval-rst}``)
are not run. Aliases that would hide runnable code (``py``, ``python3``, ``sh``, ``shell``,
``console``, ...) and blocks without an info string are errors: write ``python`` or ``bash``, or
``text`` for output.

A block whose real setting takes longer than ~30 s says so in a comment, and HTML comments on the
line(s) just before its fence tell this test what to change::

    <!-- docs-test: replace "epochs=50" "epochs=2" -->
    <!-- docs-test: skip "needs 4 GPUs" -->

``replace A B`` replaces every occurrence of A by B (in order of the directives) and fails when A
does not occur; ``skip "reason"`` skips the block with that reason; anything else is an error,
and so is a directive that is not followed by a fence.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
TIMEOUT_S = 300
RUNNABLE = {"python": "python", "bash": "bash"}
# Info strings that would hide runnable code from this test.
ALIASES = {"py", "python3", "pycon", "ipython", "sh", "shell", "console", "zsh", "shell-session"}
# MyST directives that would show code without a plain fence.
CODE_DIRECTIVES = {"{code-block}", "{code}", "{code-cell}", "{sourcecode}"}

_FENCE = re.compile(r"^(?P<indent>\s*)(?P<fence>`{3,}|~{3,})(?P<info>.*)$")
_DIRECTIVE = re.compile(r"^\s*<!--\s*docs-test:(?P<body>.*?)-->\s*$")


class DirectiveError(ValueError):
    """A docs-test directive that is malformed, unknown, stale or not attached to a block."""


@dataclass
class Block:
    """One fenced code block of a Markdown file."""

    path: str  # relative to the repository root
    line: int  # 1-based line of the opening fence
    info: str  # the whole info string
    code: str
    directives: list[tuple[int, str]] = field(default_factory=list)  # (line, body)

    @property
    def id(self) -> str:
        return f"{self.path}:L{self.line}"

    @property
    def language(self) -> str:
        return self.info.split()[0] if self.info.strip() else ""


def parse_markdown(text: str, path: str) -> tuple[list[Block], list[tuple[int, str]]]:
    """The fenced blocks of ``text`` and the directives attached to none (``(line, body)``).

    Directives attach to the fence that follows them directly (only other directive lines may
    stand between them and the fence).
    """
    lines = text.splitlines()
    blocks: list[Block] = []
    orphans: list[tuple[int, str]] = []
    pending: list[tuple[int, str]] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        directive = _DIRECTIVE.match(line)
        if directive:
            pending.append((i + 1, directive.group("body").strip()))
            i += 1
            continue
        if "docs-test" in line and "<!--" in line:
            orphans.append((i + 1, f"unparsable directive line: {line.strip()}"))
        opening = _FENCE.match(line)
        if opening and not (opening.group("fence")[0] == "`" and "`" in opening.group("info")):
            indent = len(opening.group("indent"))
            fence = opening.group("fence")
            body: list[str] = []
            j = i + 1
            closing = re.compile(rf"^\s*{re.escape(fence[0])}{{{len(fence)},}}\s*$")
            while j < len(lines) and not closing.match(lines[j]):
                body.append(_dedent(lines[j], indent))
                j += 1
            code = "\n".join(body) + "\n"
            blocks.append(Block(path, i + 1, opening.group("info").strip(), code, pending))
            pending = []
            i = j + 1
            continue
        orphans.extend(pending)
        pending = []
        i += 1
    orphans.extend(pending)
    return blocks, orphans


def _dedent(line: str, indent: int) -> str:
    """Remove up to ``indent`` leading spaces (the opening fence's indentation)."""
    stripped = len(line) - len(line.lstrip(" "))
    return line[min(indent, stripped) :]


def prepare(block: Block) -> tuple[str, str | None]:
    """The code to run after the block's directives, and the skip reason (``None``: run it).

    Raises:
        DirectiveError: For an unknown or malformed directive, a ``replace`` whose text does not
            occur in the block, or a directive on a block of a language that is not run.
    """
    code = block.code
    skip: str | None = None
    for line, body in block.directives:
        where = f"{block.path}:L{line}"
        try:
            words = shlex.split(body)
        except ValueError as exc:
            raise DirectiveError(f"{where}: cannot parse directive {body!r}: {exc}") from None
        if not words:
            raise DirectiveError(f"{where}: empty docs-test directive")
        if block.language not in RUNNABLE:
            raise DirectiveError(
                f"{where}: directive on a {block.language or 'plain'} block, which is not run"
            )
        kind, args = words[0], words[1:]
        if kind == "replace":
            if len(args) != 2:
                raise DirectiveError(f'{where}: replace takes two quoted strings: replace "A" "B"')
            old, new = args
            if not old or old not in code:
                raise DirectiveError(f"{where}: replace {old!r}: text not found in the block")
            code = code.replace(old, new)
        elif kind == "skip":
            if len(args) != 1 or not args[0].strip():
                raise DirectiveError(f'{where}: skip takes one quoted reason: skip "why"')
            skip = args[0]
        else:
            raise DirectiveError(f"{where}: unknown docs-test directive {kind!r}")
    return code, skip


def check_language(block: Block) -> None:
    """Raise ``DirectiveError`` for a block whose info string would hide runnable code."""
    lang = block.language
    if not lang:
        raise DirectiveError(
            f"{block.id}: fence without an info string; write python or bash (run by this "
            "test) or text"
        )
    if lang.lower() in ALIASES:
        raise DirectiveError(
            f"{block.id}: info string {lang!r} hides runnable code from the docs test; write "
            "python or bash (or text for output)"
        )
    if lang in CODE_DIRECTIVES:
        raise DirectiveError(
            f"{block.id}: {lang} hides code from the docs test; use a plain python or bash fence"
        )


def markdown_files() -> list[Path]:
    """README.md and every Markdown page of docs/ (outside docs/_build)."""
    pages = sorted(p for p in DOCS.rglob("*.md") if "_build" not in p.relative_to(DOCS).parts)
    return [ROOT / "README.md", *pages]


def collect() -> tuple[list[Block], list[str]]:
    """All blocks of README.md and docs/, and the orphan directives (as messages)."""
    blocks: list[Block] = []
    orphans: list[str] = []
    for path in markdown_files():
        rel = path.relative_to(ROOT).as_posix()
        found, stray = parse_markdown(path.read_text(encoding="utf-8"), rel)
        blocks.extend(found)
        orphans.extend(f"{rel}:L{line}: {body}" for line, body in stray)
    return blocks, orphans


BLOCKS, ORPHANS = collect()
CHECKED = [b for b in BLOCKS if b.language in RUNNABLE or b.directives]


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(MPLBACKEND="Agg", OMP_NUM_THREADS="1", OMP_WAIT_POLICY="PASSIVE")
    # `python` in bash blocks is the interpreter running the tests; snippets import this checkout.
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    return env


def _tail(text: str, lines: int = 60) -> str:
    return "\n".join(text.splitlines()[-lines:])


@pytest.mark.parametrize("block", CHECKED, ids=[b.id for b in CHECKED])
def test_code_block_runs(block: Block, tmp_path: Path) -> None:
    """The block runs to exit status 0 on its own (with its directives applied)."""
    code, skip = prepare(block)
    if skip is not None:
        pytest.skip(skip)
    if block.language == "python":
        script = tmp_path / "snippet.py"
        cwd = tmp_path / "cwd"
        cwd.mkdir()
        command = [sys.executable, str(script)]
    else:
        script = tmp_path / "snippet.sh"
        cwd = ROOT
        command = ["bash", "-e", "-o", "pipefail", str(script)]
    script.write_text(code, encoding="utf-8")
    try:
        proc = subprocess.run(
            command,
            cwd=cwd,
            env=_env(),
            capture_output=True,
            text=True,
            timeout=TIMEOUT_S,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired as exc:
        out = (exc.stdout or b"").decode() if isinstance(exc.stdout, bytes) else exc.stdout or ""
        pytest.fail(f"{block.id} did not finish in {TIMEOUT_S} s; output:\n{_tail(out)}")
    if proc.returncode != 0:
        pytest.fail(
            f"{block.id} exited with status {proc.returncode}.\n--- code run ---\n{code}"
            f"--- stdout (tail) ---\n{_tail(proc.stdout)}\n--- stderr (tail) ---\n"
            f"{_tail(proc.stderr)}"
        )


@pytest.mark.parametrize("block", BLOCKS, ids=[b.id for b in BLOCKS])
def test_code_block_language(block: Block) -> None:
    """No block hides runnable code behind an alias, a MyST code directive or no info string."""
    check_language(block)


@pytest.mark.parametrize("source", ["README.md", "docs"])
def test_blocks_collected(source: str) -> None:
    """Both sources yield runnable blocks (a broken collector must not pass by finding none)."""
    found = [b for b in BLOCKS if b.path == source or b.path.startswith(f"{source}/")]
    assert [b for b in found if b.language in RUNNABLE], f"no python/bash block in {source}"


def test_every_directive_precedes_a_fence() -> None:
    """A directive that is not directly above a fence would silently do nothing."""
    assert not ORPHANS, "docs-test directives not directly above a fence:\n" + "\n".join(ORPHANS)


# The collector and the directives themselves, on hand-written Markdown.

_SAMPLE = """\
# Title

<!-- docs-test: replace "epochs=50" "epochs=2" -->
<!-- docs-test: replace "print(1)" "print(2)" -->
```python
fit(epochs=50)
print(1)
```

text

<!-- docs-test: skip "needs 4 GPUs" -->
```bash
torchrun --nproc_per_node=4 train.py
```

````markdown
```python
not a block of its own
```
````

- a list item:

  ```python
  import os
  ```
"""


def test_parse_markdown_blocks_and_directives() -> None:
    blocks, orphans = parse_markdown(_SAMPLE, "x.md")
    assert [(b.line, b.language) for b in blocks] == [
        (5, "python"),
        (13, "bash"),
        (17, "markdown"),
        (25, "python"),
    ]
    assert blocks[0].code == "fit(epochs=50)\nprint(1)\n"
    assert blocks[3].code == "import os\n"
    assert orphans == []
    assert prepare(blocks[0]) == ("fit(epochs=2)\nprint(2)\n", None)
    assert prepare(blocks[1]) == ("torchrun --nproc_per_node=4 train.py\n", "needs 4 GPUs")
    assert blocks[0].id == "x.md:L5"


def test_replace_with_escaped_quotes() -> None:
    text = '<!-- docs-test: replace "a \\"b\\" c" "\\"$(mktemp -d)\\"" -->\n```bash\na "b" c\n```\n'
    (block,), _ = parse_markdown(text, "x.md")
    assert prepare(block) == ('"$(mktemp -d)"\n', None)


@pytest.mark.parametrize(
    "directive, message",
    [
        ('replace "epochs=500" "epochs=2"', "text not found"),
        ('replace "epochs=50"', "two quoted strings"),
        ("skip", "one quoted reason"),
        ('skip ""', "one quoted reason"),
        ('shrink "epochs"', "unknown docs-test directive"),
        ('replace "unclosed', "cannot parse"),
    ],
)
def test_bad_directives_fail(directive: str, message: str) -> None:
    text = f"<!-- docs-test: {directive} -->\n```python\nfit(epochs=50)\n```\n"
    (block,), _ = parse_markdown(text, "x.md")
    with pytest.raises(DirectiveError, match=message):
        prepare(block)


def test_orphan_directive_is_reported() -> None:
    text = '<!-- docs-test: skip "why" -->\n\n```python\npass\n```\n<!-- docs-test: skip "x" -->\n'
    blocks, orphans = parse_markdown(text, "x.md")
    assert blocks[0].directives == []
    assert [line for line, _ in orphans] == [1, 6]


@pytest.mark.parametrize("info", ["py", "sh", "console", "", "{code-block} python"])
def test_hidden_code_is_an_error(info: str) -> None:
    (block,), _ = parse_markdown(f"```{info}\nprint(1)\n```\n", "x.md")
    with pytest.raises(DirectiveError):
        check_language(block)


def test_directive_on_a_block_that_is_not_run_fails() -> None:
    (block,), _ = parse_markdown('<!-- docs-test: skip "x" -->\n```text\nout\n```\n', "x.md")
    with pytest.raises(DirectiveError, match="not run"):
        prepare(block)
