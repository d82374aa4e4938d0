"""``eventloop.cancelled_by``: a library worker's ``main()`` awaited until the worker is disconnected.

When ``main()`` finishes in the same loop step as the disconnect, the done-callback of
``serving`` is already scheduled; it must not cancel the worker's task afterwards (the task
goes on to wait for its exit code)."""

from __future__ import annotations

import asyncio

from sockserve.eventloop import cancelled_by


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
