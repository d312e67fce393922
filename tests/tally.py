"""Counting what the reliability tests throw at the stages, and checking each answer.

``TALLY`` is printed at the end of the run (``tests/conftest.py``): bad inputs tried, crashes
(a traceback, a wrong exit code or a multi-line answer; must be 0), data lost (a file that
existed before a failed command and changed; must be 0), kills survived.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import click
from click.testing import CliRunner

TALLY: Counter[str] = Counter()


def expect_one_line_error(code: int, stderr: str, *needles: str) -> str:
    """Assert a command failed cleanly: exit 1 or 2, last line ``error: ...`` naming ``needles``.

    Log lines before it are allowed (subprocess runs log to stderr); a traceback is a crash.
    """
    TALLY["bad inputs tried"] += 1
    lines = [line for line in stderr.strip().splitlines() if line.strip()]
    clean = (code in (1, 2) and bool(lines) and lines[-1].startswith("error: ")
             and "Traceback" not in stderr)
    if not clean:
        TALLY["crashes"] += 1
    assert clean, f"exit {code}, stderr:\n{stderr[-3000:]}"
    for needle in needles:
        assert needle in lines[-1], f"{needle!r} not in {lines[-1]!r}"
    return lines[-1]


def invoke(command: click.Command, args: list) -> tuple[int, str]:
    """Run a stage in-process: (exit code, stderr)."""
    result = CliRunner().invoke(command, [str(a) for a in args])
    return result.exit_code, result.stderr


def invoke_error(command: click.Command, args: list, *needles: str) -> str:
    """Run a stage in-process; assert its whole stderr is one ``error:`` line naming ``needles``."""
    code, stderr = invoke(command, args)
    line = expect_one_line_error(code, stderr, *needles)
    assert stderr.strip() == line, stderr
    return line


def digest(*roots: Path) -> str:
    """sha256 over every file (relative name + bytes) under ``roots`` (missing roots count too)."""
    sha = hashlib.sha256()
    for root in roots:
        files = sorted(p for p in root.rglob("*") if p.is_file()) if root.is_dir() else [root]
        for path in files:
            sha.update(str(path.relative_to(root.parent)).encode())
            sha.update(path.read_bytes() if path.exists() else b"<missing>")
    return sha.hexdigest()


@contextmanager
def nothing_lost(*roots: Path) -> Iterator[None]:
    """Assert the files under ``roots`` are byte-identical after the block."""
    before = digest(*roots)
    yield
    if digest(*roots) != before:
        TALLY["data lost"] += 1
        raise AssertionError(f"files under {[str(r) for r in roots]} changed")
