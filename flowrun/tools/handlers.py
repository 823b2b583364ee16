"""The tools and resources: thin calls into the engine, each returning a typed view.

The docstrings of the tool functions are the tool descriptions an assistant reads, so they say
what the tool is for, when to call it and what comes back. Errors are not handled here: a
`FlowrunError` raised anywhere below becomes a tool error in `FlowrunMCP` (errors.py).

No `from __future__ import annotations` here: the SDK reads the handlers' annotations at
registration, and `Resolve(ask_decision)` names a closure that only exists in `register`.
"""

import inspect
from collections.abc import Callable, Coroutine
from typing import Annotated, Any, Literal, TypeVar

import anyio
from mcp.server.elicitation import AcceptedElicitation, CancelledElicitation, DeclinedElicitation
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.context import Context
from mcp.server.mcpserver.resolve import Elicit, Resolve
from mcp_types import ToolAnnotations
from pydantic import Field

from ..flows import machine
from ..flows.enums import DecisionKind, LaunchKind, RunStatus
from ..flows.errors import UsageError
from ..flows.run import Decision, Launch
from .face import Face
from .models import DecisionForm, DecisionLiteral, FlowList, RunList, RunView, WaitResult, WaitUntil
from .views import flow_view, transcript_lines, transcript_markdown
from .waiting import MAX_WAIT_S, ProgressFeed, wait_for

RunStatusName = Literal["pending", "running", "paused", "completed", "failed", "rejected", "cancelled", "blocked",
                        "interrupted"]
RunId = Annotated[str, Field(description="the run id, e.g. 'run_01J…', from start_flow or list_runs")]
Answer = AcceptedElicitation[DecisionForm] | DeclinedElicitation | CancelledElicitation

_Handler = TypeVar("_Handler", bound=Callable[..., Coroutine[Any, Any, Any]])
READ = ToolAnnotations(read_only_hint=True, open_world_hint=False)
STEER = ToolAnnotations(read_only_hint=False, destructive_hint=False, idempotent_hint=False, open_world_hint=False)

INSTRUCTIONS = """\
flowrun runs Flows: multi-step agent workflows (for example plan, implement, verify, open a pull
request) with checkpoints where a person signs off. Use it like this:
1. list_flows to see the Flows and their parameters.
2. start_flow returns at once with the run id and the run's web page (share the URL).
3. wait_for_run(until="paused") repeatedly, until it returns reached=true.
4. If the run is paused at a checkpoint, show the person the checkpoint message and the previous
   step's summary, ask them, then decide_checkpoint with their decision (approve, reject or skip)
   and go back to 3. Never decide a checkpoint without the person's answer.
Every run result carries `hint` (what to do next) and `next_actions` (the tools that apply now).
"""


def _elicitation_supported(ctx: Context[Any, Any]) -> bool:
    capabilities = ctx.client_capabilities
    elicitation = capabilities.elicitation if capabilities is not None else None
    return elicitation is not None and (elicitation.form is not None or elicitation.url is None)


def register(server: MCPServer[Any], face: Face) -> None:
    """Add every tool and resource to `server`; handlers reach the engine through `face`."""

    def tool(title: str, annotations: ToolAnnotations) -> Callable[[_Handler], _Handler]:
        def add(fn: _Handler) -> _Handler:  # the docstring, dedented, is the description
            server.add_tool(fn, title=title, description=inspect.cleandoc(fn.__doc__ or ""), annotations=annotations)
            return fn
        return add

    @tool("Start a Flow run", ToolAnnotations(
        read_only_hint=False, destructive_hint=False, idempotent_hint=False, open_world_hint=True))
    async def start_flow(
        flow: Annotated[str, Field(description="the Flow id from list_flows, e.g. 'full-sdlc'")],
        params: Annotated[dict[str, Any] | None, Field(
            description="the Flow's parameters by name (see list_flows); omitted ones take their defaults")] = None,
        sandbox_profile: Annotated[str | None, Field(description="sandbox profile; default: the Flow's own")] = None,
        execution_mode: Annotated[Literal["interactive", "background"] | None, Field(
            description="interactive holds the sandbox at checkpoints; background releases it")] = None,
        checkpoint_mode: Annotated[Literal["template", "every", "none"] | None, Field(
            description="template: the Flow's own checkpoints; every: before each step; none: no stops")] = None,
        record: Annotated[str | None, Field(
            description="a record id (plan or initiative) to run against; its context is in scope")] = None,
    ) -> RunView:
        """Start a run of a Flow. Returns immediately (it never waits for the run) with the run id,
        its status and steps, and `url`, the run's web page to share with the person. Follow the
        run with wait_for_run. Refusals (unknown Flow, missing or mistyped parameters, daily run
        cap, engine warming up, failed pre-flight) come back as errors that say what to fix."""
        # an assistant asked for it: a chat launch (the record's context still comes along)
        launch = Launch(kind=LaunchKind.RECORD, ref=record) if record else Launch(kind=LaunchKind.CHAT,
                                                                                   ref=face.chat_id)
        run = await face.engine().start_run(
            face.actor(), flow, params or {}, sandbox_profile=sandbox_profile, execution_mode=execution_mode,
            checkpoint_mode=checkpoint_mode, launch=launch,
        )
        return face.view(run)

    async def ask_decision(run_id: str, decision: DecisionLiteral | None, comment: str | None,
                           step: str | int | None, expected_version: int | None,
                           ctx: Context[Any, Any]) -> DecisionForm | Elicit[DecisionForm]:
        """The decision as given, or, when it was left out, asked of the person (elicitation)."""
        if decision is not None:
            return DecisionForm(decision=decision, comment=comment or "")
        run = await face.engine().get_run(face.actor(), run_id)
        index = run.flow.step_index(step) if step is not None else None
        # the pure state machine refuses exactly as the real decision would (not paused, stale, ...)
        machine.decide(run, Decision(kind=DecisionKind.APPROVE, actor=face.actor().id), step=index,
                       expected_version=expected_version)
        assert run.checkpoint is not None
        cp = run.checkpoint
        where = f"step {cp.step + 1} '{run.steps[cp.step].name}'"
        if not _elicitation_supported(ctx):
            raise UsageError(
                f"decide_checkpoint needs `decision` (approve, reject or skip): this client cannot ask the "
                f"person directly. Run {run.id} waits before {where}: {cp.message} Ask the person and call "
                "decide_checkpoint again with their decision.",
                code="decision_required", run_id=run.id, step=cp.step,
            )
        previous = f"\nThe step before reported: {cp.previous_summary}" if cp.previous_summary else ""
        return Elicit(f"{run.flow.name} ({run.id}) waits before {where}: {cp.message}{previous}\n"
                      "Approve to continue, reject to stop the run, or skip this step.", DecisionForm)

    @tool("Decide a checkpoint", STEER)
    async def decide_checkpoint(
        run_id: RunId,
        answer: Annotated[Answer, Resolve(ask_decision)],
        decision: Annotated[DecisionLiteral | None, Field(
            description="approve continues, reject stops the run for good, skip skips the paused step. Pass "
                        "the person's answer; left out, clients that support elicitation ask the person")] = None,
        comment: Annotated[str | None, Field(description="the person's reason; recorded with the decision")] = None,
        step: Annotated[str | int | None, Field(
            description="the step the decision is meant for: its name (e.g. 'Create PR') or 0-based index; "
                        "refused as stale if the run waits elsewhere")] = None,
        decision_id: Annotated[str | None, Field(
            description="your idempotency key: repeating the call with it returns the first answer; a different "
                        "decision under the same key is refused (already_decided, naming the first)")] = None,
        expected_version: Annotated[int | None, Field(
            description="the run `version` the person saw; refused as stale if the run changed since")] = None,
    ) -> RunView:
        """Record a person's decision at the checkpoint a paused run waits at, and return the run
        after it: approve continues with the step, skip continues after it, reject ends the run.
        Exactly one decision per checkpoint is applied: a second one is refused (already_decided,
        naming the first), as is one meant for another step or an older version (stale_checkpoint)."""
        if not isinstance(answer, AcceptedElicitation):
            raise UsageError(f"The person did not decide ({answer.action}); run {run_id} still waits at its "
                             "checkpoint.", code="decision_declined", run_id=run_id)
        run = await face.engine().decide(
            face.actor(), run_id, answer.data.decision, comment=answer.data.comment, step=step,
            expected_version=expected_version, decision_id=decision_id,
        )
        return face.view(run)

    @tool("Get a run", READ)
    async def get_run(
        run_id: RunId,
        transcript_tail: Annotated[int | None, Field(
            ge=0, le=200, description="also return the newest N transcript lines (what the agent said and did)")] = None,
    ) -> RunView:
        """A run's status, steps with their results, the checkpoint it waits at (if paused), the
        block and its fix (if blocked), and its page URL; optionally the tail of its transcript."""
        engine, actor = face.engine(), face.actor()
        run = await engine.get_run(actor, run_id)
        lines = None
        if transcript_tail is not None:
            lines = transcript_lines(await engine.events(actor, run_id), tail=transcript_tail)
        return face.view(run, lines)

    @tool("List runs", READ)
    async def list_runs(
        status: Annotated[RunStatusName | list[RunStatusName] | None, Field(
            description="only runs in this status (or any of these)")] = None,
        flow: Annotated[str | None, Field(description="only runs of this Flow id")] = None,
        limit: Annotated[int, Field(ge=1, le=200, description="at most this many, newest first")] = 20,
    ) -> RunList:
        """Runs visible to you, newest first, optionally filtered by status and Flow."""
        wanted = [status] if isinstance(status, str) else status
        runs = await face.engine().list_runs(face.actor(), status=[RunStatus(s) for s in wanted or []] or None,
                                             flow=flow, limit=limit)
        return RunList(runs=[face.view(r) for r in runs], count=len(runs))

    @tool("List Flows", READ)
    async def list_flows() -> FlowList:
        """The Flows you can start: id, description, parameters (type, required, default) and steps,
        with the checkpoints where a person signs off."""
        return FlowList(flows=[flow_view(f) for f in face.engine().list_flows(face.actor())])

    @tool("Cancel a run", ToolAnnotations(
        read_only_hint=False, destructive_hint=True, idempotent_hint=False, open_world_hint=False))
    async def cancel_run(run_id: RunId) -> RunView:
        """Stop a running or paused run. Its workspace is kept, so resume_run can continue it later.
        You may cancel your own runs; cancelling another person's needs flows.cancel.any."""
        return face.view(await face.engine().cancel(face.actor(), run_id))

    @tool("Resume a run", STEER)
    async def resume_run(run_id: RunId) -> RunView:
        """Continue a blocked or cancelled run from its first step that did not complete. For a
        blocked run, apply the fix its `blocked.fix` names first."""
        return face.view(await face.engine().resume(face.actor(), run_id))

    @tool("Retry a run", STEER)
    async def retry_run(
        run_id: RunId,
        clone: Annotated[bool, Field(
            description="start a fresh run linked to this one instead of continuing it in place")] = False,
    ) -> RunView:
        """Retry a failed or interrupted run: the failed step and the ones after it run again; the
        earlier transcript stays. Returns the run that continues (the new one when clone is true)."""
        return face.view(await face.engine().retry(face.actor(), run_id, clone=clone))

    @tool("Wait for a run", READ)
    async def wait_for_run(
        run_id: RunId,
        ctx: Context[Any, Any],
        until: Annotated[WaitUntil, Field(
            description="paused: until the run needs a person or has ended; finished: until it has ended "
                        "(checkpoints do not count); any_change: until its or a step's status changes")] = "paused",
        timeout_s: Annotated[float, Field(gt=0, le=MAX_WAIT_S, description="give up after this many seconds")] = 45.0,
        after_seq: Annotated[int | None, Field(
            ge=0, description="for any_change: the `last_seq` you saw, so nothing in between is missed")] = None,
    ) -> WaitResult:
        """Wait (at most 50 seconds) for a run to get somewhere, then return it. Call it again while
        `reached` is false. Sends progress notifications while waiting if your client asks for them."""
        engine, actor = face.engine(), face.actor()
        started = await engine.get_run(actor, run_id)

        async def send(progress: float, message: str) -> None:
            await ctx.report_progress(progress, None, message)

        feed = ProgressFeed(send, [s.name for s in started.steps])
        began = anyio.current_time()
        run, reached = await wait_for(engine, actor, run_id, until, timeout_s, after_seq, feed)
        return WaitResult(reached=reached, timed_out=not reached, waited_s=round(anyio.current_time() - began, 3),
                          run=face.view(run))

    @server.resource("run://{run_id}", name="run", title="Run summary", mime_type="application/json",
                     description="A run's status, steps, checkpoint and links, as get_run returns them.")
    async def run_resource(run_id: str) -> str:
        return face.view(await face.engine().get_run(face.actor(), run_id)).model_dump_json(indent=2)

    @server.resource("run://{run_id}/transcript", name="run transcript", title="Run transcript",
                     mime_type="text/markdown", description="What the run's agents said and did, step by step.")
    async def transcript_resource(run_id: str) -> str:
        engine, actor = face.engine(), face.actor()
        run = await engine.get_run(actor, run_id)
        return transcript_markdown(run, transcript_lines(await engine.events(actor, run_id), limit=20_000))

