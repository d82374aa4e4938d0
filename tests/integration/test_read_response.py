"""workerharness.read_response on a keep-alive connection: two answers in one read.

Under load a worker may write a connection's two answers before the client reads the
first: both arrive in one ``recv``.  The second must be there for the next call (CI
once timed out waiting for an answer the first call had read and dropped).
"""

from __future__ import annotations

import socket

from workerharness import read_response


def answer(body: bytes) -> bytes:
    return b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n%s" % (len(body), body)


def test_two_answers_in_one_read_are_both_returned():
    ours, theirs = socket.socketpair()
    with ours, theirs:
        theirs.sendall(answer(b"first") + answer(b"second"))
        assert read_response(ours, timeout=2) == (b"HTTP/1.1 200 OK\r\ncontent-length: 5", b"first")
        assert read_response(ours, timeout=2) == (b"HTTP/1.1 200 OK\r\ncontent-length: 6", b"second")


def test_a_close_delimited_answer_reads_to_the_end():
    ours, theirs = socket.socketpair()
    with ours:
        with theirs:
            theirs.sendall(b"HTTP/1.1 200 OK\r\nconnection: close\r\n\r\nall of it")
        assert read_response(ours, timeout=2) == (b"HTTP/1.1 200 OK\r\nconnection: close", b"all of it")
