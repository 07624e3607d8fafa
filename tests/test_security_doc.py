"""docs/security.md names the test of every promise it makes: each named test file and test function must exist."""

from __future__ import annotations

import re
from pathlib import Path

from requirement_maps import node_problem

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "security.md"


def named_tests() -> list[tuple[str, str | None]]:
    """(test file, test name or None) for every `tests/...` reference in the document; a bare `::name` after a
    reference names another test of the same file."""
    found: list[tuple[str, str | None]] = []
    for row in DOC.read_text().splitlines():
        current = None
        for ref in re.findall(r"`([^`]+)`", row):
            m = re.fullmatch(r"(tests/[\w/]+\.py)(?:::(\w+))?", ref)
            if m:
                current = m.group(1)
                found.append((current, m.group(2)))
            elif ref.startswith("::") and current:
                found.append((current, ref[2:]))
            elif re.fullmatch(r"test_\w+\.py::\w+", ref):
                file, name = ref.split("::")  # a basename: test basenames are unique (tests/test_layers.py)
                (path,) = (ROOT / "tests").rglob(file)
                current = str(path.relative_to(ROOT))
                found.append((current, name))
    return found


def test_every_test_the_security_page_names_exists() -> None:
    refs = named_tests()
    assert len(refs) > 30
    missing = []
    for file, name in refs:
        if name is not None:
            problem = node_problem(f"{file}::{name}", ROOT)
            missing += [problem] if problem else []
        elif not (ROOT / file).is_file():
            missing.append(f"{file} does not exist")
    assert missing == []
