"""Hypothesis strategies for hostile input: JSON of any shape, written the way a careless or
malicious client writes it (NaN and Infinity literals, duplicate keys, lone surrogates, deep
nesting), each protocol's own fields with values of the wrong type, query strings with repeated
and bracketed keys, and bytes that are not JSON at all."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

from hypothesis import strategies as st

INT64_MAX = 2**63 - 1


def mostly(
    good: st.SearchStrategy[Any], bad: st.SearchStrategy[Any], percent: int = 85
) -> st.SearchStrategy[Any]:
    """``good`` about ``percent``% of the time, else ``bad`` (``one_of`` alone would shrink and
    lean towards its first branch, and rarely reach the inside of a valid-looking body)."""
    return st.integers(0, 99).flatmap(lambda n: good if n < percent else bad)


# Text: any code point but lone surrogates (NUL included), plus the strings that break things
# (lone surrogates among them: rare, as one in a body makes the whole body unreadable).
hostile_text = mostly(
    st.one_of(
        st.text(max_size=20),
        st.sampled_from(
            [
                "",
                " ",
                "\x00",
                "💥",
                "[CLY]_view",
                "identity.link",
                "transaction.charge",
                "page.visit",
                "' OR 1=1 --",
                "'; DROP TABLE events; --",
                "../../etc/passwd",
                "%00",
                "x" * 300,
            ]
        ),
    ),
    st.sampled_from(["\ud800", "a\udfffb"]),
    98,
)
"""Strings as a client may send them: any code point (NUL and lone surrogates too) and the names
and values the rules treat specially."""

big_numbers = st.sampled_from(
    [
        0,
        -1,
        1,
        2**31,
        2**53 + 1,
        INT64_MAX,
        INT64_MAX + 1,
        2**64,
        2**70,
        -(2**63) - 1,
        -(2**70),
        10**40,
        1e300,
        -1e300,
        1e-320,
        0.5,
        -0.0,
        1e11,
        1e13,
        253402300800,  # 10000-01-01 in seconds
    ]
)
numbers = st.one_of(
    st.integers(),
    st.floats(allow_nan=False, allow_infinity=False),
    big_numbers,
)
scalars = st.one_of(st.none(), st.booleans(), numbers, hostile_text)
NAN = object()
INF = object()
NEG_INF = object()
"""Markers for the literals JSON does not have but some encoders write anyway."""


def json_values(max_leaves: int = 8) -> st.SearchStrategy[Any]:
    """JSON values of any shape (and the non-JSON NaN/Infinity literals, as markers)."""
    leaves = mostly(scalars, st.sampled_from([NAN, INF, NEG_INF]), 95)
    return st.recursive(
        leaves,
        lambda children: st.one_of(
            st.lists(children, max_size=4),
            st.dictionaries(hostile_text, children, max_size=4),
        ),
        max_leaves=max_leaves,
    )


def _string(text: str) -> str:
    """A JSON string literal; lone surrogates as \\u escapes (what a JS client writes)."""
    return json.dumps(text, ensure_ascii=True)


def render(value: Any, *, duplicate: bool = False) -> str:
    """``value`` as JSON text; ``duplicate`` repeats every object's first key with null."""
    if value is NAN:
        return "NaN"
    if value is INF:
        return "Infinity"
    if value is NEG_INF:
        return "-Infinity"
    if value is None or isinstance(value, bool):
        return json.dumps(value)
    if isinstance(value, int | float):
        return json.dumps(value)
    if isinstance(value, str):
        return _string(value)
    if isinstance(value, list):
        return "[" + ",".join(render(v, duplicate=duplicate) for v in value) + "]"
    items = [f"{_string(str(k))}:{render(v, duplicate=duplicate)}" for k, v in value.items()]
    if duplicate and value:
        items.append(f"{_string(str(next(iter(value))))}:null")
    return "{" + ",".join(items) + "}"


def plain(value: Any) -> Any:
    """``value`` with the NaN/Infinity markers as strings (for clients that build the body with
    a real JSON encoder, e.g. httpx's ``json=``)."""
    if value is NAN or value is INF or value is NEG_INF:
        return "NaN"
    if isinstance(value, list):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    return value


def decoded(value: Any) -> Any:
    """``value`` as a server's JSON decoder can yield it: the NaN/Infinity markers as strings and
    no lone surrogates (a JSON body with one is refused whole, so no event can carry one)."""
    if isinstance(value, str):
        return value.encode("utf-8", "replace").decode("utf-8")
    if isinstance(value, list):
        return [decoded(v) for v in value]
    if isinstance(value, dict):
        return {decoded(str(k)): decoded(v) for k, v in value.items()}
    return plain(value)


def deep(depth: int) -> str:
    """A valid JSON document nested ``depth`` deep (arrays and objects alternating)."""
    opening = "".join('{"a":[' for _ in range(depth))
    closing = "".join("]}" for _ in range(depth))
    return opening + "1" + closing


@st.composite
def json_documents(draw: st.DrawFn, value: st.SearchStrategy[Any] | None = None) -> bytes:
    """A body: ``value`` (or any JSON value) written with random quirks, or a deep document, or
    a truncated one."""
    document = draw(value if value is not None else json_values())
    text = render(document, duplicate=draw(st.booleans()))
    quirk = draw(st.sampled_from(["none"] * 12 + ["truncate", "deep", "bom", "trailing"]))
    if quirk == "truncate" and text:
        text = text[: draw(st.integers(0, len(text) - 1))]
    elif quirk == "deep":
        text = deep(draw(st.sampled_from([64, 1000, 5000])))
    elif quirk == "bom":
        text = "\ufeff" + text
    elif quirk == "trailing":
        text = text + draw(st.sampled_from([",", "}", " x", "\x00"]))
    return text.encode("utf-8", "surrogatepass")


raw_bytes = st.one_of(
    st.binary(max_size=200),
    st.sampled_from([b"", b"null", b"[]", b"{}", b"\x1f\x8b\x08\x00", b"\xff\xfe{", b"{" * 3000]),
)
"""Bytes that are rarely JSON."""


@st.composite
def fields(
    draw: st.DrawFn,
    names: dict[str, st.SearchStrategy[Any]],
    required: tuple[str, ...] = (),
) -> dict[str, Any]:
    """An object with a protocol's own fields (``required`` ones always, the others about two
    times in three), each mostly a plausible value, else one of the wrong type, plus unknown
    keys now and then."""
    wrong = st.one_of(scalars, json_values(3))
    found: dict[str, Any] = {}
    if draw(st.integers(0, 9)) == 0:
        found.update(draw(st.dictionaries(hostile_text, scalars, max_size=2)))
    for name, good in names.items():
        if name in required or draw(st.integers(0, 2)) > 0:
            found[name] = draw(mostly(good, wrong))
    return found


def maybe_list(item: st.SearchStrategy[Any], max_size: int = 4) -> st.SearchStrategy[Any]:
    """Mostly a list of ``item``; sometimes with other values among them, or not a list."""
    return mostly(
        st.lists(item, min_size=1, max_size=max_size),
        st.one_of(st.lists(st.one_of(item, scalars), max_size=max_size), json_values(3)),
    )


times = st.one_of(
    numbers,
    st.sampled_from(
        [
            "2026-03-01T10:00:00Z",
            "2026-03-01T10:00:00+14:00",
            "2026-03-01",
            "9999-12-31T23:59:59Z",
            "0001-01-01T00:00:00Z",
            "1772366400",
            "1772366400000",
            "1e999",
            "nan",
            "inf",
            "--",
            "",
        ]
    ),
)


@st.composite
def query_strings(
    draw: st.DrawFn, params: dict[str, st.SearchStrategy[Any]], required: tuple[str, ...] = ()
) -> str:
    """A query (or form) string of the protocol's parameters, values JSON-encoded when they are
    not text, with repeated keys, bracketed keys (``app_key[$ne]=``) and raw junk mixed in."""
    pairs: list[tuple[str, str]] = []
    chosen = draw(fields(params, required))
    for key, value in chosen.items():
        text = value if isinstance(value, str) else render(value)
        pairs.append((str(key), text))
        if draw(st.integers(0, 5)) == 0:
            pairs.append((str(key), draw(hostile_text)))  # repeated key
        if draw(st.integers(0, 7)) == 0:
            pairs.append((f"{key}[{draw(st.sampled_from(['$ne', '0', '', 'a']))}]", text))
    encoded = "&".join(
        f"{quote(k.encode('utf-8', 'surrogatepass'))}={quote(v.encode('utf-8', 'surrogatepass'))}"
        for k, v in pairs
    )
    if draw(st.integers(0, 5)) == 0:
        encoded += draw(st.sampled_from(["&", "&&=", "&=x", "&%", "&%zz=1", "&a=%ff%fe", ";b=1"]))
    return encoded
