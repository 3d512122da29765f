"""Hostile servers: replies that trickle or never end, and Retry-After dates."""

import email.utils
import resource
import time

import httpx
import pytest
from fake_openai_server import Fail, FakeVLM, Huge, Trickle, colour_image

from skvf.labeling import LabelingError, LabelingWarning
from skvf.labeling._client import MAX_REPLY_BYTES, _retry_after
from skvf.labeling._transport import BoundedTransport, RequestLimits


def test_a_trickling_server_is_cut_off_at_the_deadline(server, make_labeler):
    # One byte every 0.3 s: each read of the socket returns well within any timeout, so
    # only a deadline over the whole request stops it (it would take ~100 s to finish).
    config = FakeVLM(script=[Trickle(0.3), Trickle(0.3)])
    labeler = make_labeler(server(config), timeout=1.0, max_retries=1).fit()
    started = time.perf_counter()
    with pytest.raises(LabelingError, match="Timeout.*2 request.*retries exhausted"):
        labeler.label([colour_image("red")])
    assert time.perf_counter() - started < 8.0
    assert config.requests == 2 and labeler.usage_["retries"] == 1
    deadline = time.monotonic() + 5
    while config.unfinished < 2 and time.monotonic() < deadline:
        time.sleep(0.05)  # the server notices the closed connection at its next byte
    assert config.unfinished == 2  # each connection closed, not left trickling


def test_a_trickle_within_the_deadline_is_answered(server, make_labeler):
    config = FakeVLM(script=[Trickle(0.0005)])
    labeler = make_labeler(server(config), timeout=5.0, max_retries=0).fit()
    assert list(labeler.transform([colour_image("red")])) == ["robin"]


def test_a_huge_reply_is_refused_unread_and_not_asked_again(server, make_labeler):
    config = FakeVLM(script=[Huge(size=50_000_000)])
    labeler = make_labeler(server(config), on_error="warn", max_concurrency=1).fit()
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.warns(LabelingWarning, match=f"over {MAX_REPLY_BYTES:,} bytes"):
        names, valid = labeler.label([colour_image("red"), colour_image("blue")])
    assert list(valid) == [False, True] and names[1] == "blue test bird"
    assert config.requests == 2  # refused at once, never retried
    assert labeler.usage_["failures"] == 1
    deadline = time.monotonic() + 5
    while config.unfinished < 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert config.unfinished == 1  # the connection was closed before the end of the reply
    assert config.bytes_streamed < 50_000_000
    grown_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before
    assert grown_kib < 40_000  # far less than the reply: it was never held whole


def test_a_reply_encoded_though_not_asked_to_be_is_refused():
    seen = {}

    def gzip_server(request):
        seen["accept-encoding"] = request.headers.get("accept-encoding")
        return httpx.Response(200, headers={"Content-Encoding": "gzip"}, content=b"\x1f\x8b")

    client = httpx.Client(transport=BoundedTransport(httpx.MockTransport(gzip_server)))
    limits = RequestLimits(timeout=5.0, max_bytes=1000)
    with pytest.raises(httpx.DecodingError):
        limits.call(lambda: client.post("http://example.invalid/v1/chat/completions"))
    assert seen["accept-encoding"] == "identity"
    assert limits.refused == "a reply encoded as 'gzip', which was not asked for"
    # Outside a labelling request the transport leaves requests and replies alone.
    assert client.post("http://example.invalid/").headers["content-encoding"] == "gzip"


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("7", 7.0),
        ("0.5", 0.5),
        (30, 30.0),  # an HTTP date 30 s from now
        (-30, 0.0),
        ("Wed, 21 Oct 2015 07:28:00 GMT", 0.0),  # the past: no wait
        ("soon", None),
        ("", None),
    ],
    ids=["seconds", "fraction", "date", "past-date", "rfc-example", "garbage", "empty"],
)
def test_retry_after_reads_seconds_and_http_dates(header, expected):
    if isinstance(header, int):
        header = email.utils.formatdate(time.time() + header, usegmt=True)

    class Error(Exception):
        litellm_response_headers = {"retry-after": header}

    value = _retry_after(Error())
    if expected is None:
        assert value is None
    else:
        assert value == pytest.approx(expected, abs=1.5)


def test_a_retry_after_date_far_ahead_is_capped(server, make_labeler, monkeypatch):
    monkeypatch.setattr("skvf.labeling._client.MAX_BACKOFF", 0.2)
    far = email.utils.formatdate(time.time() + 3600, usegmt=True)
    config = FakeVLM(script=[Fail(429, retry_after=far)])
    labeler = make_labeler(server(config)).fit()
    started = time.perf_counter()
    assert list(labeler.transform([colour_image("red")])) == ["red test bird"]
    assert time.perf_counter() - started < 5.0  # the cap, not the hour the date asks
    assert config.requests == 2


def test_a_retry_after_http_date_is_honoured(server, make_labeler):
    when = email.utils.formatdate(time.time() + 2, usegmt=True)  # whole seconds: 1-2 s away
    config = FakeVLM(script=[Fail(503, retry_after=when)])
    labeler = make_labeler(server(config)).fit()
    started = time.perf_counter()
    assert list(labeler.transform([colour_image("red")])) == ["red test bird"]
    assert time.perf_counter() - started >= 0.9
    assert config.requests == 2
