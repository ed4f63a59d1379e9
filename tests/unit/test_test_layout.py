"""The test tree itself: `pytest` with no arguments (pyproject's `testpaths`) must collect it.

The test folders are not packages, so pytest imports each test module by its file name: two
files with one name in different folders stop the whole run at collection ("import file
mismatch"). CI runs the suites apart and would not notice; a newcomer's `pytest` would.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]


def test_no_two_test_modules_share_a_file_name() -> None:
    where: defaultdict[str, list[str]] = defaultdict(list)
    for path in TESTS.rglob("test_*.py"):
        where[path.name].append(str(path.relative_to(TESTS)))
    shared = {name: paths for name, paths in where.items() if len(paths) > 1}
    assert not shared, f"test modules sharing a file name: {shared}"
