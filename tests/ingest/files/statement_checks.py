"""Checks the bank statement formats (BAI2, MT940) share: a sample's render round trip, and the
fuzz test that damages real files. Each format's module passes its parser and what differs."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ingest.files.records import ParsedFile, ParseError


def render_round_trip(fmt: ModuleType, path: Path) -> tuple[ParsedFile, ParsedFile, bytes]:
    """A sample parsed, rendered and parsed again by format module `fmt`. Asserts the lines come
    back unchanged and the second parse renders to the same bytes; returns (first parse, second
    parse, rendered) for the format's own checks of the statements."""
    parsed = fmt.parse(path)
    rendered = fmt.render(parsed)
    again = fmt.parse(rendered)
    assert [dataclasses.asdict(x) for x in again.statement_lines] == [
        dataclasses.asdict(x) for x in parsed.statement_lines]
    assert fmt.render(again) == rendered
    return parsed, again, rendered


@st.composite
def damaged_file(draw, files: dict[str, bytes], fragments: list[bytes], *, max_delete: int,
                 max_insert: int) -> bytes:
    """One of `files` damaged one to three times: truncated, a bit flipped, up to `max_delete`
    bytes deleted, up to `max_insert` random bytes or one of the format's `fragments` inserted,
    or a line dropped."""
    data = bytearray(files[draw(st.sampled_from(sorted(files)))])
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(["truncate", "flip", "delete", "insert", "drop_line"]))
        at = draw(st.integers(0, max(len(data) - 1, 0)))
        if kind == "truncate":
            del data[at:]
        elif kind == "flip" and data:
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif kind == "delete":
            del data[at:at + draw(st.integers(1, max_delete))]
        elif kind == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=max_insert)
                               | st.sampled_from(fragments))
        else:
            lines = bytes(data).split(b"\n")
            del lines[draw(st.integers(0, len(lines) - 1))]
            data = bytearray(b"\n".join(lines))
    return bytes(data)


def check_damaged_files_parse_or_are_quarantined(
        parse: Callable[[bytes], ParsedFile], files: dict[str, bytes], fragments: list[bytes], *,
        max_delete: int, max_insert: int) -> None:
    """100 damaged_file examples: each parses to statements that name an account and a
    currency, or is refused with a ParseError giving a reason and a `line N` location."""

    @settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(damaged=damaged_file(files, fragments, max_delete=max_delete, max_insert=max_insert))
    def run(damaged: bytes):
        try:
            parsed = parse(damaged)
        except ParseError as err:
            assert err.reason and err.location and err.location.startswith("line ")
            return
        assert isinstance(parsed, ParsedFile)
        for statement in parsed.statements:
            assert statement.account_id and statement.currency

    run()
