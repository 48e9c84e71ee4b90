"""Form-encoded fields are read exactly as ``urllib.parse.parse_qsl`` reads them."""

from __future__ import annotations

from urllib.parse import parse_qsl, quote_plus

from hypothesis import given
from hypothesis import strategies as st

from tally.adapters.form import parse_form

PIECES = [*"%+&=\\aAfF09xz é€\u00a9", "%C3", "%A9", "%E2%82%AC", "%2"]
"""Characters and escapes that meet in form bodies, malformed ones included."""
FORM_ALPHABET = st.sampled_from(PIECES)


@given(st.lists(FORM_ALPHABET, max_size=60).map("".join))
def test_any_text_reads_as_parse_qsl_reads_it(text: str) -> None:
    assert parse_form(text) == parse_qsl(text, keep_blank_values=True)


@given(st.dictionaries(st.text(), st.text(), max_size=5))
def test_encoded_fields_come_back_as_they_were(fields: dict[str, str]) -> None:
    text = "&".join(f"{quote_plus(name)}={quote_plus(value)}" for name, value in fields.items())
    assert dict(parse_form(text)) == fields


def test_malformed_escapes_stay_as_written_next_to_good_ones() -> None:
    assert parse_form("a=%zz%41&b=%4&%=c&d") == [("a", "%zzA"), ("b", "%4"), ("%", "c"), ("d", "")]
