"""The fuzz tests' damage to real files: truncate anywhere, flip, delete or insert bytes, drop a
line. Every parser must answer a damaged file with a ParsedFile or a ParseError, nothing else."""

from __future__ import annotations

from hypothesis import strategies as st


@st.composite
def damaged(draw, data: bytes) -> bytes:
    op = draw(st.sampled_from(["truncate", "flip", "delete", "insert", "drop_line"]))
    at = draw(st.integers(0, len(data)))
    if op == "truncate":
        return data[:at]
    if op == "flip":
        at = min(at, len(data) - 1)
        return data[:at] + bytes([data[at] ^ draw(st.integers(1, 255))]) + data[at + 1:]
    if op == "delete":
        return data[:at] + data[at + draw(st.integers(1, 64)):]
    if op == "insert":
        return data[:at] + draw(st.binary(min_size=1, max_size=16)) + data[at:]
    lines = data.split(b"\n")
    del lines[min(at, len(lines) - 1)]
    return b"\n".join(lines)
