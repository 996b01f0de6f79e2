"""Check that every number in the tables of docs/results/*.md is found in the results files the table cites.

The convention, for every page in docs/results/:
- Each table (consecutive lines starting with ``|``) is preceded by a line ``Source: PATH[, PATH ...]``
  (paths relative to the repository root, with or without backticks); it applies to the next table below it.
- Every number in the table's cells, header row included, must be found in one of its source files after
  rounding the file's value to the digits shown: ``31.81`` is found where a file holds 31.8077 (or the text
  ``31.81``), not where it holds 31.8049. A scale written ``x3.2`` is the number 3.2.
- Text in backticks (options, file and model names) is not checked, nor the separator row.
- Results belong in tables on these pages: numbers in the prose are not checked.

Numbers in a file: for JSON every number at any depth (and numbers written inside strings), for any other
text file (Markdown, CSV, plain text) every number in its text (``x3.2`` too).

A table without a Source line, a source that does not exist, or a number not found is reported as
``PAGE:LINE: message``, and the exit status is 1.

    python eval/check_docs.py                      # docs/results/*.md of this repository
    python eval/check_docs.py --root DIR [PAGE ...]
"""

import argparse
import json
import re
import sys
from functools import lru_cache
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
NUMBER = re.compile(r"(?<![\w.])[-+]?\d+(?:\.\d+)?(?:e[-+]?\d+)?(?!\w)", re.IGNORECASE)
SOURCE = re.compile(r"^\s*Source:\s*(.+?)\s*$")
CODE = re.compile(r"`[^`]*`")
SCALE = re.compile(r"\bx(?=\d)")


def _strings_and_numbers(value, out: list[str]) -> None:
    """Collect, from a parsed JSON value, every number (as Python writes it) and every number inside a string."""
    if isinstance(value, bool) or value is None:
        return
    if isinstance(value, (int, float)):
        out.append(repr(value))
    elif isinstance(value, str):
        out.extend(NUMBER.findall(value))
    elif isinstance(value, dict):
        for key, item in value.items():
            _strings_and_numbers(key, out)
            _strings_and_numbers(item, out)
    elif isinstance(value, list):
        for item in value:
            _strings_and_numbers(item, out)


@lru_cache(maxsize=None)
def numbers_in(path: Path) -> tuple[float, ...]:
    """Every number a results file holds."""
    text = path.read_text()
    found: list[str] = []
    if path.suffix == ".json":
        _strings_and_numbers(json.loads(text), found)
    else:
        found = NUMBER.findall(SCALE.sub(" ", text))
    return tuple(float(token) for token in found if token.lstrip("+-") not in {"inf", "nan"})


def shown_numbers(row: str) -> list[str]:
    """The numbers written in a table row, outside backticks, as written (``x3.2`` gives ``3.2``)."""
    return NUMBER.findall(SCALE.sub(" ", CODE.sub(" ", row)))


def is_found(shown: str, values: tuple[float, ...]) -> bool:
    """Whether a value rounds to ``shown`` at the precision ``shown`` is written with (``1.71e+04``: to three
    significant digits)."""
    target = shown.lstrip("+")
    mantissa, exponent, _ = target.lower().partition("e")
    digits = len(mantissa.split(".")[1]) if "." in mantissa else 0
    if exponent:
        return any(float(f"{value:.{digits}e}") == float(target) for value in values)
    return any(f"{value:.{digits}f}" == target for value in values)


def check_page(page: Path, root: Path) -> tuple[list[str], int]:
    """The errors of one page and the count of numbers checked."""
    errors: list[str] = []
    checked = 0
    sources: list[Path] | None = None
    source_line = 0
    in_table = False
    name = page.relative_to(root) if page.is_relative_to(root) else page
    for number, line in enumerate(page.read_text().splitlines(), start=1):
        match = SOURCE.match(line)
        if match:
            sources = [root / item.strip().strip("`") for item in match.group(1).split(",") if item.strip()]
            source_line = number
            for path in sources:
                if not path.is_file():
                    errors.append(f"{name}:{number}: source {path.relative_to(root)} does not exist")
            continue
        if not line.lstrip().startswith("|"):
            if in_table:
                sources = None
            in_table = False
            continue
        if not in_table and sources is None:
            errors.append(f"{name}:{number}: table without a Source line before it")
        in_table = True
        if sources is None or re.fullmatch(r"\s*\|(\s*:?-+:?\s*\|)+\s*", line):
            continue
        values = tuple(value for path in sources if path.is_file() for value in numbers_in(path))
        for shown in shown_numbers(line):
            checked += 1
            if not is_found(shown, values):
                cited = ", ".join(str(path.relative_to(root)) for path in sources)
                errors.append(f"{name}:{number}: {shown} is not in {cited} (Source line {source_line})")
    return errors, checked


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Check docs/results tables against the results files they cite.")
    parser.add_argument("pages", nargs="*", type=Path, help="pages to check (default: ROOT/docs/results/*.md)")
    parser.add_argument("--root", type=Path, default=REPO, help="repository root the Source paths are relative to")
    args = parser.parse_args(argv)
    root = args.root.resolve()
    pages = [page.resolve() for page in args.pages] or sorted((root / "docs" / "results").glob("*.md"))
    if not pages:
        print(f"error: no pages in {root / 'docs' / 'results'}", file=sys.stderr)
        return 1
    errors, checked = [], 0
    for page in pages:
        page_errors, page_checked = check_page(page, root)
        errors += page_errors
        checked += page_checked
    for error in errors:
        print(error, file=sys.stderr)
    print(f"{len(pages)} pages, {checked} numbers checked, {len(errors)} errors")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
