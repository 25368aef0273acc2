"""A periodic step ends when it is stopped, even when the step swallows the cancellation (a library catching it, or
turning it into an error): `stop` returns, and the step is not run again."""

from __future__ import annotations

import asyncio
import logging

import pytest

from core.periodic import Periodic, cancel_and_wait

log = logging.getLogger("test.periodic")


@pytest.mark.parametrize("swallow", ["returns", "raises"])
async def test_stop_ends_a_step_that_swallows_its_cancellation(swallow: str) -> None:
    entered, runs = asyncio.Event(), []

    async def step() -> None:
        runs.append(1)
        entered.set()
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            if len(runs) > 1:
                raise  # only the first one is swallowed, so that a failing test still ends
            if swallow == "raises":
                raise RuntimeError("the request was cancelled") from None
            return  # as if the cancelled work had finished

    periodic = Periodic("swallower", 0.01, step, log)
    periodic.start()
    await asyncio.wait_for(entered.wait(), 5)
    stopping = asyncio.ensure_future(periodic.stop())
    done, _ = await asyncio.wait({stopping}, timeout=5)
    assert done, "stop() did not return: the loop slept and stepped on after its cancellation"
    assert runs == [1]


async def test_a_failing_step_is_tried_again_and_stop_still_ends_it(caplog: pytest.LogCaptureFixture) -> None:
    runs = []

    async def step() -> None:
        runs.append(1)
        raise ValueError("flaky")

    periodic = Periodic("flaky", 0.01, step, log)
    periodic.start()
    deadline = asyncio.get_running_loop().time() + 5
    while len(runs) < 3:
        assert asyncio.get_running_loop().time() < deadline, runs
        await asyncio.sleep(0.01)
    await asyncio.wait_for(periodic.stop(), 5)
    assert "flaky failed" in caplog.text


async def test_cancel_and_wait_keeps_the_callers_own_cancellation() -> None:
    """A caller cancelled while it waits for the task to end stays cancelled; the task's cancellation alone ends
    there."""
    ending = asyncio.Event()

    async def slow_to_end() -> None:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            ending.set()
            await asyncio.sleep(0.2)  # its cleanup takes a while
            raise

    async def stops(task: asyncio.Task[None]) -> str:
        await cancel_and_wait(task)
        return "went on"

    quick = asyncio.create_task(asyncio.sleep(30))
    await asyncio.sleep(0)
    assert await stops(quick) == "went on"  # only the task was cancelled: the caller goes on

    slow = asyncio.create_task(slow_to_end())
    await asyncio.sleep(0)
    caller = asyncio.create_task(stops(slow))
    await asyncio.wait_for(ending.wait(), 5)
    caller.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(caller, 5)
    assert slow.cancelled()


async def test_cancel_and_wait_in_a_cancelled_tasks_cleanup_lets_the_cleanup_go_on() -> None:
    cleaned: list[str] = []

    async def owner() -> None:
        child = asyncio.create_task(asyncio.sleep(30))
        try:
            await asyncio.sleep(30)
        finally:  # being cancelled: its cleanup stops the child, then goes on
            await cancel_and_wait(child)
            cleaned.append("after the child")

    task = asyncio.create_task(owner())
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 5)
    assert cleaned == ["after the child"]
