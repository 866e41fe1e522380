"""CSV records with the physical line each starts on, for the text formats' error locations."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator

from ingest.files.records import ParseError


def csv_records(text: str, first_line: int = 1) -> Iterator[tuple[int, list[str]]]:
    """(line where the record starts, cells) of every record of `text`, whose first line is
    `first_line` of the file (a quoted value may span lines). Broken CSV raises ParseError
    `csv_syntax` at the line of the record it is in."""
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    start = first_line
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            raise ParseError("csv_syntax", str(exc), f"line {start}") from None
        yield start, row
        start = reader.line_num + first_line
