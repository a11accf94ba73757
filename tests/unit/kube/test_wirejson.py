"""The operator's JSON decoding gives the standard library's values and errors."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from deviceplugin_operator.kube import wirejson

JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=2**63 - 4, max_value=2**70)  # around and beyond 64 bits
    | st.floats(allow_nan=False)
    | st.text(),  # control characters too (lone surrogates: below)
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)


def assert_decodes_as_json(document: str | bytes) -> None:
    """The same value as ``json.loads`` (repr tells 1 from 1.0 and True from 1, which == does
    not), or the same kind of exception."""
    try:
        expected = json.loads(document)
    except (ValueError, RecursionError) as refused:
        with pytest.raises(type(refused)):
            wirejson.loads(document)
    else:
        assert repr(wirejson.loads(document)) == repr(expected)


@given(JSON_VALUES, st.booleans())
def test_a_document_decodes_to_what_json_gives(value: Any, ascii_only: bool) -> None:
    document = json.dumps(value, ensure_ascii=ascii_only)
    assert_decodes_as_json(document)
    # as bytes; a lone surrogate written as UTF-8 is not UTF-8 (UnicodeDecodeError)
    assert_decodes_as_json(document.encode("utf-8", "surrogatepass"))


@pytest.mark.parametrize(
    "document",
    [
        b'{"n": 123456789012345678901234567890}',
        b"[NaN, Infinity, -Infinity]",
        b"1e400",
        b'"\\ud800"',
        b"\xef\xbb\xbf[1]",  # a byte-order mark
        b"[" * 5000 + b"]" * 5000,
        b'{"a": 1, "a": 2}',
    ],
)
def test_documents_the_fast_parser_reads_otherwise_decode_as_json_does(document: bytes) -> None:
    assert_decodes_as_json(document)


@pytest.mark.parametrize(
    "document",
    ["", "[1,", "{'a': 1}", "nul", '{"a": 1} x', '"a\nb"', "[1,]", "01", "+1", '"\\x41"'],
)
def test_malformed_documents_raise_what_json_raises(document: str) -> None:
    with pytest.raises(json.JSONDecodeError) as expected:
        json.loads(document)
    with pytest.raises(json.JSONDecodeError) as raised:
        wirejson.loads(document.encode())
    assert (raised.value.msg, raised.value.pos) == (expected.value.msg, expected.value.pos)


def test_bytes_that_are_not_utf8_raise_what_json_raises() -> None:
    with pytest.raises(UnicodeDecodeError):
        wirejson.loads(b'"\xff"')
