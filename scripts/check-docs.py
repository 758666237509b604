#!/usr/bin/python3
# SPDX-License-Identifier: GPL-2.0
"""Parses every Documentation/*.rst with docutils and fails on any warning
or error (a malformed table, a short title underline, a broken reference
inside the file): the documents stay readable as reStructuredText.

Usage: scripts/check-docs.py [DIR]   (default: the repository's Documentation)
"""

import io
import pathlib
import sys

import docutils.core
import docutils.utils


def check(path: pathlib.Path) -> tuple[int, str]:
    """The number of docutils messages for `path`, and their text."""
    stream = io.StringIO()
    try:
        docutils.core.publish_doctree(
            path.read_text(),
            source_path=str(path),
            settings_overrides={
                "report_level": 2,
                "halt_level": 5,
                "warning_stream": stream,
                # Sphinx roles and directives the kernel's docs style uses
                # are not in plain docutils; these files use none.
                "file_insertion_enabled": False,
                "raw_enabled": False,
            },
        )
    except docutils.utils.SystemMessage as e:
        return 1, str(e)
    text = stream.getvalue()
    return sum(text.count(f"({level}/") for level in ("WARNING", "ERROR", "SEVERE")), text


def main() -> int:
    root = pathlib.Path(__file__).resolve().parent.parent
    docs = pathlib.Path(sys.argv[1]) if len(sys.argv) > 1 else root / "Documentation"
    problems = 0
    files = sorted(docs.glob("*.rst"))
    for path in files:
        n, text = check(path)
        problems += n
        if text:
            print(text, end="")
    print(f"{len(files)} documents, {problems} problems")
    return 1 if problems or not files else 0


if __name__ == "__main__":
    sys.exit(main())
