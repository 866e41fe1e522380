"""Text files saved as UTF-16 with a byte-order mark (Windows' "Unicode" exports, some banks'
camt XML) read exactly as their UTF-8 originals; a file with the mark that is not UTF-16 is
quarantined with reason `encoding`. The file's identity stays the hash of its own bytes."""

from __future__ import annotations

import codecs
import re

import pytest

from ingest.files.formats import sniff_source
from ingest.files.loader import detect_and_parse, load_landing

SAMPLES = [("camt/genkgo/camt053.v2.minimal.xml", "bank"),
           ("camt/genkgo/camt053.v2.multi.statement.xml", "bank"),
           ("camt/genkgo/camt054.v4.xml", "bank"),
           ("mt940/jejik/ing.sta", "bank"),
           ("bai2/ministryofjustice/nwb_example.bai2", "bank"),
           ("fx/eurofxref.csv", "fx")]

ENCODINGS = {"utf-16-le": codecs.BOM_UTF16_LE, "utf-16-be": codecs.BOM_UTF16_BE}


def utf16(data: bytes, encoding: str) -> bytes:
    """The file as Windows would save it: the mark, then UTF-16; an XML declaration says so."""
    text = data.decode("utf-8-sig")
    text = re.sub(r'encoding="[^"]*"', 'encoding="UTF-16"', text, count=1)
    return ENCODINGS[encoding] + text.encode(encoding)


@pytest.mark.parametrize("encoding", sorted(ENCODINGS))
@pytest.mark.parametrize(("sample", "source"), SAMPLES)
def test_a_utf16_file_parses_as_its_utf8_original(shared_data, sample, source, encoding):
    path = shared_data / sample
    original = path.read_bytes()
    converted = utf16(original, encoding)
    assert converted != original
    assert sniff_source(converted[:4096], path.name) == source
    expected = detect_and_parse(original, path.name, source)
    assert detect_and_parse(converted, path.name, source) == expected
    assert expected.row_count > 0


def test_a_utf16_camt_lands_and_loads_and_a_false_mark_is_quarantined(settings, shared_data):
    minimal = (shared_data / "camt/genkgo/camt053.v2.minimal.xml").read_bytes()
    bank = settings.landing_dir / "bank"
    bank.mkdir(parents=True, exist_ok=True)
    (bank / "unicode.xml").write_bytes(utf16(minimal, "utf-16-le"))
    # the mark, then bytes that are no UTF-16 (an unpaired high surrogate)
    (bank / "false_mark.xml").write_bytes(codecs.BOM_UTF16_LE + "<?xml".encode("utf-16-le")
                                          + b"\x00\xd8\x41\x00")
    report = load_landing(settings)
    by_name = {f.path.rsplit("/", 1)[-1]: f for f in report.files}
    assert by_name["unicode.xml"].status == "loaded"
    assert by_name["unicode.xml"].rows == detect_and_parse(minimal, "m.xml", "bank").row_count
    assert (by_name["false_mark.xml"].status, by_name["false_mark.xml"].reason) == (
        "quarantined", "encoding")
    assert by_name["false_mark.xml"].location.startswith("byte ")
