"""The releases `make compat` tests (``releases.txt``) and the README's table of them, read one way everywhere."""

from __future__ import annotations

from tests.conftest import ROOT

LIST = ROOT / "tests" / "compat" / "releases.txt"


def listed() -> dict[str, str]:
    """``releases.txt``: release -> its mark (``below`` for the one under the supported range, else empty)."""
    rows = {}
    for line in LIST.read_text(encoding="utf-8").splitlines():
        words = line.split("#", 1)[0].split()
        if words:
            rows[words[0]] = " ".join(words[1:])
    return rows


def readme_rows() -> dict[str, list[str]]:
    """The README's "Ultralytics releases" table: release -> the cells after the first."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("\n## Ultralytics releases\n", 1)[1].split("\n## ", 1)[0]
    rows = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("|") and cells[0][:1].isdigit():
            rows[cells[0].split()[0]] = cells[1:]
    return rows
