"""Plans and initiatives: the records a run can be launched from ("Automated" mode).

A record has a title, a body, a repository (`owner/name`, matched against the sandbox profiles'
`repository_id`), a status and links. Launching a Flow from one puts it in every skill's scope
(`record.title`, `record.body`, `record.data.repository`, ...) and links it on the run's summary
card; pre-flight refuses a start whose record, or whose record's repository, does not exist. A
step's agent may create or update one with the `save_record` tool; that becomes the step's View
Plan / View Initiative artifact.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any, Literal

from pydantic import BaseModel, Field

from ..flows.enums import Scope
from ..flows.errors import NotFound, ParameterError
from ..flows.run import new_id, now
from ..storage.base import RecordRow, Store
from .access import Actor

RecordKind = Literal["plan", "initiative"]
RecordStatus = Literal["draft", "active", "done", "archived"]
RECORD_KINDS: tuple[RecordKind, ...] = ("plan", "initiative")
MAX_TITLE = 200
MAX_BODY = 100_000
MAX_LINK = 2000
REPOSITORY = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9._-]+")
LINK = re.compile(r"https?://[^\s<>\"'\\]+", re.IGNORECASE)


class RecordData(BaseModel):
    """What `RecordRow.data` holds for a plan or an initiative."""

    workspace: str = "default"
    repository: str | None = None
    status: RecordStatus = "draft"
    links: list[str] = Field(default_factory=list)
    created_by: str = ""
    updated_at: str = ""


def _check(title: str | None, body: str | None, repository: str | None = None,
           links: Sequence[str] = ()) -> None:
    if title is not None and not title.strip():
        raise ParameterError("a record needs a title")
    if title is not None and len(title) > MAX_TITLE:
        raise ParameterError(f"a record's title is at most {MAX_TITLE} characters (got {len(title)})")
    if body is not None and len(body) > MAX_BODY:
        raise ParameterError(f"a record's body is at most {MAX_BODY} characters (got {len(body)})")
    if repository and not REPOSITORY.fullmatch(repository):
        raise ParameterError(f"a record's repository is owner/name (like orcette/insights), not {repository!r}")
    for link in links:
        if not LINK.fullmatch(link) or len(link) > MAX_LINK:
            raise ParameterError(f"a record's link is an http(s) URL of at most {MAX_LINK} characters, not {link!r}")


async def create_record(store: Store, actor: Actor, kind: str, title: str, body: str = "", *,
                        repository: str | None = None, status: RecordStatus = "draft",
                        links: Sequence[str] = ()) -> RecordRow:
    """Raises ParameterError naming a bad kind, an empty title or an oversized field."""
    actor.require(Scope.RUN, f"create a {kind}")
    if kind not in RECORD_KINDS:
        raise ParameterError(f"a record is a plan or an initiative, not {kind!r}")
    _check(title, body, repository, links)
    data = RecordData(workspace=actor.workspace, repository=repository or None, status=status, links=list(links),
                      created_by=actor.id, updated_at=now().isoformat())
    record = RecordRow(id=new_id(kind), kind=kind, title=title.strip(), body=body, data=data.model_dump())
    await store.put_record(record)
    return record


async def get_record(store: Store, actor: Actor, record_id: str) -> RecordRow:
    """Raises NotFound: no such plan or initiative in the actor's workspace."""
    actor.require(Scope.READ, "read records")
    record = await store.get_record(record_id)
    if record is None or record.kind not in RECORD_KINDS or \
            RecordData.model_validate(record.data).workspace != actor.workspace:
        raise NotFound(f"no plan or initiative {record_id!r}", record=record_id)
    return record


async def update_record(store: Store, actor: Actor, record_id: str, *, title: str | None = None,
                        body: str | None = None, repository: str | None = None,
                        status: RecordStatus | None = None, add_links: Sequence[str] = (),
                        links: Sequence[str] | None = None) -> RecordRow:
    """`repository=""` clears it; `links` replaces the links, `add_links` appends new ones.

    Raises:
        NotFound: no such record in the actor's workspace.
        ParameterError: an empty title, an oversized field, a repository that is not owner/name,
            a link that is not an http(s) URL (nothing is changed).
    """
    actor.require(Scope.RUN, "update a record")
    record = await get_record(store, actor, record_id)
    _check(title, body, repository, [*(links or ()), *add_links])
    data = RecordData.model_validate(record.data)
    kept = list(links) if links is not None else data.links
    changes: dict[str, Any] = {"updated_at": now().isoformat(),
                               "links": [*kept, *(link for link in add_links if link not in kept)]}
    if repository is not None:
        changes["repository"] = repository or None
    if status is not None:
        changes["status"] = status
    updated = record.model_copy(update={
        "title": title.strip() if title is not None else record.title,
        "body": body if body is not None else record.body,
        "data": data.model_copy(update=changes).model_dump(),
    })
    await store.put_record(updated)
    return updated


async def list_records(store: Store, actor: Actor, kind: str | None = None) -> list[RecordRow]:
    """Newest first (ids sort by time)."""
    actor.require(Scope.READ, "list records")
    rows: list[RecordRow] = []
    for each in ((kind,) if kind else RECORD_KINDS):
        rows += [r for r in await store.list_records(each)
                 if RecordData.model_validate(r.data).workspace == actor.workspace]
    return sorted(rows, key=lambda r: r.id.split("_", 1)[-1], reverse=True)
