"""ChunkedBodyMiddleware: a length-less body is read whole and given a Content-Length, up to a limit."""

from __future__ import annotations

import asyncio

from sockserve.worker.wsgi import ChunkedBodyMiddleware


def run(middleware, headers, pieces):
    seen, sent = {}, []
    messages = [{"type": "http.request", "body": p, "more_body": i < len(pieces) - 1}
                for i, p in enumerate(pieces)]

    async def receive():
        return messages.pop(0)

    async def send(message):
        sent.append(message)

    async def app(scope, receive, send):
        seen["headers"] = dict(scope["headers"])
        seen["body"] = (await receive())["body"]

    asyncio.run(middleware(app)({"type": "http", "headers": headers}, receive, send))
    return seen, sent


def test_chunked_body_gets_a_content_length():
    seen, sent = run(ChunkedBodyMiddleware, [(b"transfer-encoding", b"chunked")], [b"ab", b"cd", b""])
    assert seen == {"headers": {b"content-length": b"4"}, "body": b"abcd"} and sent == []


def test_sized_body_streams_through_untouched():
    seen, _ = run(ChunkedBodyMiddleware, [(b"content-length", b"2")], [b"ab"])
    assert seen == {"headers": {b"content-length": b"2"}, "body": b"ab"}


def test_body_over_the_limit_is_413():
    seen, sent = run(lambda app: ChunkedBodyMiddleware(app, limit=3), [(b"transfer-encoding", b"chunked")],
                     [b"ab", b"cd", b""])
    assert seen == {} and sent[0]["status"] == 413 and b"over 3 bytes" in sent[1]["body"]
