"""A call's tools as LiveKit function tools (raw schemas, core/tools.py): the HTTP tools run by the session's
`ToolRunner`, the call tools here, on the call itself. Every one is recorded by the runner, whatever it does."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from typing import TYPE_CHECKING, Any

from livekit.agents import RunContext, function_tool
from livekit.agents.llm import RawFunctionTool, StopResponse

from core.control import DTMF_CODES
from core.sip_uri import transfer_uri
from core.tools import FILLER_DELAY_SECONDS, CallTool, HttpTool, Tool, ToolResult, ToolRunner, declaration

from .commands import transfer_caller
from .ending import Ending
from .warm_transfer import warm_transfer

if TYPE_CHECKING:
    from .entrypoint import CallJob

log = logging.getLogger("voxarena.job")

DTMF_DIGITS = re.compile(r"^[0-9*#]{1,32}$")
# Between two keys of one send_dtmf, as LiveKit's own send_dtmf tool waits.
DTMF_GAP_SECONDS = 0.3
# A warm transfer waits this long at most for the words the agent said before calling it.
PLAYOUT_WAIT_SECONDS = 15.0


class CallActions:
    """What the call tools do on one running call."""

    def __init__(self, job: CallJob) -> None:
        self.job = job

    async def run(self, tool: CallTool, arguments: dict[str, Any], context: RunContext) -> ToolResult:
        if tool.kind == "end_call":
            return self.end_call(context)
        if tool.kind == "transfer_call":
            reason = arguments.get("reason")
            return await self.transfer_call(tool, context, reason if isinstance(reason, str) else None)
        return await self.send_dtmf(str(arguments.get("digits", "")))

    def end_call(self, context: RunContext) -> ToolResult:
        """The call ends once the reply to this tool (the goodbye) has been said: the same speech carries on, and
        nothing the caller says cuts it short (the agent has decided; a caller talking over it still hears it)."""
        job = self.job
        context.disallow_interruptions()

        def ended(_: Any) -> None:
            job.spawn(job.end(Ending("agent_ended")), "end-by-agent")

        context.speech_handle.add_done_callback(ended)
        return ToolResult("ok", "The call ends after your next words: say a short goodbye, nothing else.")

    async def transfer_call(self, tool: CallTool, context: RunContext, reason: str | None = None) -> ToolResult:
        if not tool.target:
            return ToolResult("error", "error: no transfer target is configured")
        if tool.mode == "warm":
            # what the agent said before calling the tool ("One moment, I'll get a colleague") is heard before the hold
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(context.wait_for_playout(), PLAYOUT_WAIT_SECONDS)
            # the caller, back from hold, hears in full why (the reply to this tool is the same speech)
            context.disallow_interruptions()
            # in a task of the job, as below: the caller hanging up mid-transfer ends the call and this speech
            warm = self.job.spawn(
                warm_transfer(self.job, transfer_uri(tool.target), reason=reason, interrupt=False), "transfer"
            )
            outcome = await asyncio.shield(warm)
            if outcome.connected:
                return ToolResult("ok", "The caller is connected to your colleague; you have left the call.")
            return ToolResult(
                "error",
                f"error: the transfer did not go through ({outcome.reason}: {outcome.detail}); the caller is back "
                "with you: tell them, briefly, and go on helping",
            )
        # The transfer ends the call, which closes the session and cancels the speech this tool runs in: the
        # transfer and the end run in a task of the job, which finishes them whatever happens to this one.
        transferring = self.job.spawn(transfer_caller(self.job, transfer_uri(tool.target)), "transfer")
        failure = await asyncio.shield(transferring)
        if failure is not None:
            return ToolResult("error", f"error: the transfer failed ({failure}); the caller is still with you")
        return ToolResult("ok", "The caller was transferred.")

    async def send_dtmf(self, digits: str) -> ToolResult:
        if not DTMF_DIGITS.match(digits):
            return ToolResult("error", "error: digits must be 1 to 32 of 0-9, * and #")
        participant = self.job.ctx.room.local_participant
        for i, digit in enumerate(digits):
            if i:
                await asyncio.sleep(DTMF_GAP_SECONDS)
            await participant.publish_dtmf(code=DTMF_CODES[digit], digit=digit)
        return ToolResult("ok", f"Pressed {digits}.")


def function_tools(tools: list[Tool], runner: ToolRunner, actions: CallActions) -> list[RawFunctionTool]:
    return [_function_tool(tool, runner, actions) for tool in tools]


def _function_tool(tool: Tool, runner: ToolRunner, actions: CallActions) -> RawFunctionTool:
    async def handler(raw_arguments: dict[str, object], context: RunContext) -> str:
        arguments, call_key = dict(raw_arguments), context.function_call.call_id
        if isinstance(tool, HttpTool):
            if tool.filler:
                async with context.with_filler(tool.filler, delay=FILLER_DELAY_SECONDS):
                    return (await runner.call_http(tool, arguments, call_key)).text
            return (await runner.call_http(tool, arguments, call_key)).text
        result = await runner.tracked(tool, arguments, call_key, lambda: actions.run(tool, arguments, context))
        if tool.kind == "transfer_call" and actions.job.warm_transfer is not None and result.status == "ok":
            raise StopResponse()  # connected: the agent has left the conversation, it must not reply
        return result.text

    return function_tool(handler, raw_schema=declaration(tool))
