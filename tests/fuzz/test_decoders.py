"""Property-based tests of every protocol decoder (``tally.adapters``), without HTTP.

For any request: ``credentials`` and ``decode`` either succeed or raise the adapter's
``RequestError`` (nothing else escapes); a refusal is encoded in the protocol's own error shape
with a known code; what decodes goes through the pipeline, and what the pipeline keeps can be
journalled and loaded into the store's columns."""

from __future__ import annotations

from urllib.parse import parse_qsl

import pytest
from fuzz_requests import ADAPTERS, DISTINCT, authorizations, bodies, encodings, query_for
from fuzz_settings import examples
from fuzz_shapes import FUZZ_APP, check_refusal, check_storable
from fuzz_strategies import hostile_text, json_documents, mostly, raw_bytes
from hypothesis import given, settings
from hypothesis import strategies as st

from tally.adapters.base import Adapter, IngestRequest, RequestError


@st.composite
def requests(draw: st.DrawFn, path: str) -> IngestRequest:
    adapter = ADAPTERS[path]
    body, content_type = draw(bodies(path, FUZZ_APP.app_key))
    if ADAPTERS[path].protocol == "segment" or draw(st.integers(0, 19)) == 0:
        body, encoding = draw(encodings(body))
    else:
        encoding = None
    raw_query = draw(query_for(path, FUZZ_APP.app_key))
    headers = {"content-type": content_type}
    if encoding is not None:
        headers["content-encoding"] = encoding
    authorization = draw(authorizations(FUZZ_APP.app_key, FUZZ_APP.api_key, "secret"))
    if authorization is not None:
        headers["authorization"] = authorization
    if draw(st.booleans()):
        headers["x-tally-key"] = (
            draw(st.one_of(st.just(FUZZ_APP.app_key), hostile_text))
            .encode("utf-8", "surrogatepass")
            .decode("latin-1")
        )
    method = draw(mostly(st.sampled_from(adapter.methods), st.sampled_from(["GET", "PUT"]), 90))
    return IngestRequest(
        method=method,
        path=path,
        raw_query=raw_query,
        query=dict(parse_qsl(raw_query, keep_blank_values=True)),
        headers=headers,
        body=b"" if method == "GET" else body,
        client_ip="203.0.113.9",
    )


def check_decoder(adapter: Adapter, request: IngestRequest) -> None:
    try:
        adapter.credentials(request)
    except RequestError as error:
        check_refusal(adapter, error)
    try:
        decoded = adapter.decode(request)
    except RequestError as error:
        check_refusal(adapter, error)
        return
    check_storable(adapter.protocol, decoded)


@pytest.mark.parametrize("path", DISTINCT)
@settings(max_examples=examples(10))
@given(data=st.data())
def test_structured_requests_decode_or_are_refused_in_the_protocols_shape(
    path: str, data: st.DataObject
) -> None:
    check_decoder(ADAPTERS[path], data.draw(requests(path)))


BATCH_PATHS = ["/api/v1/events", "/i", "/i/bulk", "/v1/event/report", "/v1/batch"]
BATCH_PATHS += ["/v4/events/batch", "/v4/transactions/batch", "/v1/user/register"]


@pytest.mark.parametrize("path", BATCH_PATHS)
@settings(max_examples=examples(20))
@given(data=st.data())
def test_batches_decode_or_are_refused(path: str, data: st.DataObject) -> None:
    """More examples where a body carries many items (the decoders' loops)."""
    check_decoder(ADAPTERS[path], data.draw(requests(path)))


@pytest.mark.parametrize("path", ["/api/v1/events", "/i", "/v1/track", "/v4/events/custom"])
@settings(max_examples=examples(20))
@given(
    body=st.one_of(raw_bytes, json_documents()), content_type=st.sampled_from(["", "text/plain"])
)
def test_arbitrary_bytes_decode_or_are_refused(path: str, body: bytes, content_type: str) -> None:
    request = IngestRequest(
        method="POST",
        path=path,
        query={},
        headers={"content-type": content_type},
        body=body,
    )
    check_decoder(ADAPTERS[path], request)
