"""sockserve/eventloop.py: the loop's exception handler, and ``cancelled_by`` (a library worker's
``main()`` awaited until the worker is disconnected).

When ``main()`` finishes in the same loop step as the disconnect, the done-callback of
``serving`` is already scheduled; it must not cancel the worker's task afterwards (the task
goes on to wait for its exit code)."""

from __future__ import annotations

import asyncio
import logging
import socket

from sockserve.eventloop import cancelled_by, new_event_loop


def test_main_done_in_the_same_step_as_the_disconnect_leaves_the_task_uncancelled():
    async def scenario() -> tuple[bool, str]:
        loop = asyncio.get_running_loop()
        serving, gate = loop.create_future(), loop.create_future()

        async def main() -> None:
            await gate

        def both() -> None:  # one step: main() wakes first, then serving's callbacks are queued
            gate.set_result(None)
            serving.set_result(0)

        loop.call_soon(both)
        disconnected = await cancelled_by(serving, main())
        try:
            for _ in range(3):
                await asyncio.sleep(0)  # what the worker awaits next
        except asyncio.CancelledError:
            return disconnected, "cancelled"
        return disconnected, "running"

    assert asyncio.run(scenario()) == (False, "running")


def test_a_disconnect_while_main_waits_cancels_main_and_says_so():
    async def scenario() -> tuple[bool, bool]:
        loop = asyncio.get_running_loop()
        serving, cancelled = loop.create_future(), []

        async def main() -> None:
            try:
                await asyncio.sleep(30)
            except asyncio.CancelledError:
                cancelled.append(True)
                raise

        loop.call_later(0.01, serving.set_result, 0)
        return await cancelled_by(serving, main()), cancelled == [True]

    assert asyncio.run(scenario()) == (True, True)


def test_main_returning_before_any_disconnect_says_false():
    async def scenario() -> bool:
        serving = asyncio.get_running_loop().create_future()

        async def main() -> None:
            await asyncio.sleep(0)

        served = await cancelled_by(serving, main())
        serving.set_result(0)
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        return served

    assert asyncio.run(scenario()) is False


def test_a_stream_handler_cancelled_before_its_first_step_is_not_reported(caplog):
    """Python 3.11's StreamReaderProtocol reports a client handler's task cancelled before its
    first step ("Exception in callback", CancelledError: no try in the handler can catch it),
    as a library worker's ``main()`` raising under load did (explorer, 1 run in 4); a real
    exception in a callback is still reported."""
    ran = []

    async def handler(reader, writer):
        ran.append(True)

    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        known = set(asyncio.all_tasks())

        def connected(reader, writer):  # called in connection_made, before the task exists
            loop.call_soon(lambda: [t.cancel() for t in asyncio.all_tasks() - known])  # runs first
            return handler(reader, writer)

        server = await asyncio.start_server(connected, "127.0.0.1", 0)
        known.add(asyncio.current_task())
        with socket.create_connection(server.sockets[0].getsockname()[:2]) as client:
            for _ in range(50):
                await asyncio.sleep(0.01)
            client.close()
        server.close()
        loop.call_soon(lambda: 1 / 0)  # a real error still reaches the log
        await asyncio.sleep(0.01)

    caplog.set_level(logging.ERROR, logger="asyncio")
    with asyncio.Runner(loop_factory=new_event_loop) as runner:
        runner.run(scenario())
    assert ran == []  # cancelled before its first step
    reported = [r.getMessage() for r in caplog.records if r.name == "asyncio"]
    assert len(reported) == 1 and "Exception in callback" in reported[0], reported
    assert "ZeroDivisionError" in caplog.text and "CancelledError" not in caplog.text, caplog.text
