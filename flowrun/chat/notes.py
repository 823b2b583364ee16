"""What a chat is told about the runs it started: a run's event becomes a note, or nothing.

Notes are the chat's own messages (role `note`): a checkpoint reached, a decision taken (here, in
the overlay, the CLI, over MCP or in another tab), the run completed, failed, blocked or
interrupted. The ones the person should hear about from the agent ask for a reply.
"""

from __future__ import annotations

from ..flows.chat import ChatMessage, ChatRole, NoteKind, new_message_id
from ..flows.enums import DecisionKind, RunStatus
from ..flows.events import CheckpointReached, DecisionRecorded, Event, RunStatusChanged
from ..flows.run import Run

_DECIDED = {DecisionKind.APPROVE: "approved", DecisionKind.REJECT: "rejected", DecisionKind.SKIP: "skipped"}
_ENDINGS = {
    RunStatus.COMPLETED: NoteKind.COMPLETED,
    RunStatus.FAILED: NoteKind.FAILED,
    RunStatus.BLOCKED: NoteKind.BLOCKED,
    RunStatus.INTERRUPTED: NoteKind.INTERRUPTED,
    RunStatus.CANCELLED: NoteKind.CANCELLED,
    RunStatus.REJECTED: NoteKind.REJECTED,
}
_TELL = {NoteKind.CHECKPOINT, NoteKind.COMPLETED, NoteKind.FAILED, NoteKind.BLOCKED, NoteKind.INTERRUPTED}
QUIET = frozenset({RunStatus.COMPLETED, RunStatus.REJECTED, RunStatus.CANCELLED, RunStatus.FAILED,
                   RunStatus.BLOCKED, RunStatus.INTERRUPTED})
"""After these a run makes no news until someone resumes or retries it: stop following it."""


def _step(run: Run, index: int) -> str:
    if 0 <= index < len(run.steps):
        return f"step {index + 1} '{run.steps[index].name}'"
    return f"step {index + 1}"


def note_for(run: Run, event: Event) -> ChatMessage | None:
    """The note for one of the run's events, or None for events a chat does not hear about.
    `run` is the run as it is now (for names and summaries)."""
    data = event.data
    head = f"{run.flow.name} (run {run.id})"
    kind: NoteKind
    if isinstance(data, CheckpointReached):
        cp = data.checkpoint
        kind = NoteKind.CHECKPOINT
        text = f"{head} is waiting at a checkpoint before {_step(run, cp.step)}: {cp.message}"
        if cp.previous_summary:
            text += f" The step before reported: {cp.previous_summary}"
        text += " Approve & Continue, Reject or Skip Step?"
    elif isinstance(data, DecisionRecorded):
        decision = data.decision
        kind = NoteKind.DECISION
        who = "automatically" if decision.auto else f"by {decision.actor}"
        where = _step(run, data.step)
        text = f"{where[:1].upper()}{where[1:]} of {head} was {_DECIDED[decision.kind]} {who}"
        text += f": “{decision.comment}”" if decision.comment else "."
    elif isinstance(data, RunStatusChanged) and data.status in _ENDINGS:
        kind = _ENDINGS[data.status]
        text = _ending(run, head, data)
    else:
        return None
    return ChatMessage(message_id=new_message_id(), role=ChatRole.NOTE, text=text, run_id=run.id, note=kind,
                       run_seq=event.seq, wants_reply=kind in _TELL)


def _ending(run: Run, head: str, data: RunStatusChanged) -> str:
    status = data.status
    if status is RunStatus.COMPLETED:
        done = sum(1 for s in run.steps if s.status.value == "completed")
        text = f"{head} completed ({done} of {len(run.steps)} steps done)."
        if run.links.pull_request:
            text += f" Pull request: {run.links.pull_request}"
        last = next((s.summary for s in reversed(run.steps) if s.summary), "")
        return text + (f" Last step: {last}" if last else "")
    if status is RunStatus.BLOCKED and data.blocked is not None:
        return f"{head} is blocked: {data.blocked.message} Fix: {data.blocked.fix}"
    reason = f": {data.reason}" if data.reason else "."
    if status is RunStatus.FAILED and run.error:
        reason = f": {run.error}"
    return f"{head} {status.value}{reason}"
