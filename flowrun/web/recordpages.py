"""The pages of plans and initiatives: the list (`/records`, filtered by kind and status), a
record (`/records/{id}`: its Markdown body, links, and the runs started from it), and the forms
that create and change one (`/records/new`, `/records/{id}/edit`).

The forms are plain HTML forms posted to the server (no script): they are checked with the JSON
API's own models (`launch_api.RecordCreate`) and the engine's rules (`runtime.records`), and a
refused form comes back with what was typed in it and the reasons, so nothing is lost. Posting
one changes state, so it follows the API's Origin rule: a browser (cookie) request must name an
allowed Origin. "Run a Flow from this plan" opens the Flows page with the record in scope: its
Run Flow dialog then starts runs with `record_id`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from ..flows.enums import LaunchKind
from ..flows.enums import Scope as AccessScope
from ..flows.errors import FlowrunError, ParameterError, StartRefused
from ..flows.run import Run
from ..runtime.access import Actor
from ..runtime.engine import Engine
from ..runtime.preflight import select_profile_name
from ..runtime.records import (
    RECORD_KINDS,
    RecordData,
    create_record,
    get_record,
    list_records,
    update_record,
)
from ..storage.base import RecordRow
from ..tools.face import EngineSlot
from .launch_api import RecordCreate
from .pagebase import SECURITY_HEADERS, Authenticate, PageBase, StateCheck

STATUSES = ("draft", "active", "done", "archived")
FORM_LIMIT = 512 * 1024  # bytes: the body's 100,000 characters, UTF-8 and form-encoded, fit
RUN_PAGE = 200
RUN_SCAN = 2000  # the newest runs of the workspace searched for those started from a record
LABELS = {"kind": "Kind", "title": "Title", "body": "Body", "repository": "Repository", "status": "Status",
          "links": "Links"}


def record_url(record_id: str) -> str:
    return f"/records/{record_id}"


def record_ref(record: RecordRow) -> dict[str, str]:
    """A record as other pages link it: id, kind, title and its page."""
    return {"id": record.id, "kind": record.kind, "title": record.title, "url": record_url(record.id)}


async def launched_record(engine: Engine, actor: Actor, run: Run) -> dict[str, str] | None:
    """The plan or initiative a run was launched from, to link by its title (None when the run
    was not launched from one, or the record is gone)."""
    if run.launch.kind != LaunchKind.RECORD or not run.launch.ref:
        return None
    try:
        return record_ref(await get_record(engine.deps.store, actor, run.launch.ref))
    except FlowrunError:
        return None


async def runs_from(engine: Engine, actor: Actor, record_id: str) -> tuple[list[Run], bool]:
    """Runs launched from the record, newest first, among the workspace's newest `RUN_SCAN` runs;
    the flag says the search stopped there (older ones may exist)."""
    found: list[Run] = []
    before: str | None = None
    for _ in range(RUN_SCAN // RUN_PAGE):
        page = await engine.list_runs(actor, limit=RUN_PAGE, before=before)
        found += [r for r in page if r.launch.kind == LaunchKind.RECORD and r.launch.ref == record_id]
        if len(page) < RUN_PAGE:
            return found, False
        before = page[-1].id
    return found, True


@dataclass
class RecordForm:
    """What a person typed: shown again, unchanged, when it is refused."""

    kind: str = "plan"
    title: str = ""
    body: str = ""
    repository: str = ""
    status: str = "draft"
    links: str = ""  # one per line

    @classmethod
    def of(cls, record: RecordRow) -> RecordForm:
        data = RecordData.model_validate(record.data)
        return cls(kind=record.kind, title=record.title, body=record.body, repository=data.repository or "",
                   status=data.status, links="\n".join(data.links))

    def link_list(self) -> list[str]:
        return [line.strip() for line in self.links.splitlines() if line.strip()]

    def checked(self) -> RecordCreate:
        """Raises ValidationError: the API's own checks."""
        return RecordCreate.model_validate({
            "kind": self.kind, "title": self.title, "body": self.body, "repository": self.repository.strip() or None,
            "status": self.status, "links": self.link_list()})


def validation_messages(exc: ValidationError) -> list[str]:
    out = []
    for error in exc.errors():
        field = str(error["loc"][0]) if error["loc"] else ""
        out.append(f"{LABELS.get(field, field)}: {error['msg']}")
    return out


async def read_form(request: Request) -> dict[str, str]:
    """An urlencoded form, bounded; the last value of each field.

    Raises:
        ParameterError: the body is too large or not a form.
    """
    if "application/x-www-form-urlencoded" not in request.headers.get("content-type", ""):
        raise ParameterError("send the form as application/x-www-form-urlencoded")
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > FORM_LIMIT:
            raise ParameterError(f"the form is larger than {FORM_LIMIT // 1024} KiB")
    try:
        fields = parse_qs(body.decode("utf-8"), keep_blank_values=True, strict_parsing=False)
    except UnicodeDecodeError:
        raise ParameterError("the form is not UTF-8") from None
    return {name: values[-1].replace("\r\n", "\n") for name, values in fields.items()}


async def form_fields(request: Request, *fixed: str) -> dict[str, str]:
    """The record form's fields that were sent (`read_form`), but for the `fixed` ones.

    Raises:
        ParameterError: the body is too large or not a form.
    """
    return {k: v for k, v in (await read_form(request)).items() if k in LABELS and k not in fixed}


class RecordPages(PageBase):
    def __init__(self, slot: EngineSlot, authenticate: Authenticate, may_change: StateCheck) -> None:
        super().__init__(authenticate)
        self.slot = slot
        self.may_change = may_change

    def _form(self, actor: Actor, form: RecordForm, record: RecordRow | None, errors: list[str],
              status: int = 200) -> Response:
        noun = record.kind if record else form.kind if form.kind in RECORD_KINDS else "plan"
        title = f"Edit {record.title}" if record else f"New {noun}"
        return self.html("record_form.html", status=status, title=title, page="records", actor=actor, module=None,
                         form=form, record=record, errors=errors, statuses=STATUSES, kinds=RECORD_KINDS, noun=noun)

    async def _save(self, actor: Actor, form: RecordForm, record: RecordRow | None,
                    save: Callable[[RecordCreate], Awaitable[RecordRow]]) -> Response:
        """Check the form (the API's model, then the engine's rules) and save it; a refusal is
        the form again with the reasons and what was typed."""
        try:
            row = await save(form.checked())
        except ValidationError as exc:
            return self._form(actor, form, record, validation_messages(exc), status=422)
        except ParameterError as exc:
            return self._form(actor, form, record, [exc.message], status=422)
        except FlowrunError as exc:
            return self.error(actor, exc)
        return RedirectResponse(record_url(row.id), status_code=303, headers=SECURITY_HEADERS)

    async def list_page(self, request: Request) -> Response:
        actor = await self.authenticate(request)
        if actor is None:
            return self.signin()
        kind = request.query_params.get("kind") or None
        status = request.query_params.get("status") or None
        try:
            if kind is not None and kind not in RECORD_KINDS:
                raise ParameterError(f"kind is plan or initiative, not {kind!r}")
            if status is not None and status not in STATUSES:
                raise ParameterError(f"status is one of {', '.join(STATUSES)}, not {status!r}")
            rows = await list_records(self.slot.get().deps.store, actor, kind)
        except FlowrunError as exc:
            return self.error(actor, exc)
        records = [(r, RecordData.model_validate(r.data)) for r in rows]
        if status is not None:
            records = [(r, d) for r, d in records if d.status == status]
        return self.html("records.html", title="Plans & initiatives", page="records", actor=actor, module=None,
                         records=records, kind=kind or "", wanted=status or "", statuses=STATUSES,
                         can_run=AccessScope.RUN in actor.scopes)

    async def detail(self, request: Request) -> Response:
        actor = await self.authenticate(request)
        if actor is None:
            return self.signin()
        try:
            engine = self.slot.get()
            record = await get_record(engine.deps.store, actor, request.path_params["record_id"])
            runs, more = await runs_from(engine, actor, record.id)
        except FlowrunError as exc:
            return self.error(actor, exc)
        return self.html("record.html", title=record.title, page="records", actor=actor, module=None,
                         record=record, data=RecordData.model_validate(record.data), scope=flows_scope(record, engine),
                         runs=runs, more_runs=more, scan=RUN_SCAN, can_run=AccessScope.RUN in actor.scopes)

    async def new_form(self, request: Request) -> Response:
        actor = await self.authenticate(request)
        if actor is None:
            return self.signin()
        kind = request.query_params.get("kind", "plan")
        try:
            actor.require(AccessScope.RUN, "create a plan or initiative")
        except FlowrunError as exc:
            return self.error(actor, exc)
        return self._form(actor, RecordForm(kind=kind if kind in RECORD_KINDS else "plan"), None, [])

    async def create(self, request: Request) -> Response:
        actor = await self.poster(request, self.may_change, AccessScope.RUN, "create a plan or initiative")
        if isinstance(actor, Response):
            return actor
        try:
            form = RecordForm(**await form_fields(request))
        except FlowrunError as exc:
            return self.error(actor, exc)

        async def save(body: RecordCreate) -> RecordRow:
            return await create_record(self.slot.get().deps.store, actor, body.kind, body.title, body.body,
                                       repository=body.repository, status=body.status, links=body.links)

        return await self._save(actor, form, None, save)

    async def edit_form(self, request: Request) -> Response:
        actor = await self.authenticate(request)
        if actor is None:
            return self.signin()
        try:
            actor.require(AccessScope.RUN, "change a plan or initiative")
            record = await get_record(self.slot.get().deps.store, actor, request.path_params["record_id"])
        except FlowrunError as exc:
            return self.error(actor, exc)
        return self._form(actor, RecordForm.of(record), record, [])

    async def update(self, request: Request) -> Response:
        actor = await self.poster(request, self.may_change, AccessScope.RUN, "change a plan or initiative")
        if isinstance(actor, Response):
            return actor
        try:
            store = self.slot.get().deps.store
            record = await get_record(store, actor, request.path_params["record_id"])
            form = RecordForm(kind=record.kind, **await form_fields(request, "kind"))  # a record keeps its kind
        except FlowrunError as exc:
            return self.error(actor, exc)

        async def save(body: RecordCreate) -> RecordRow:
            return await update_record(store, actor, record.id, title=body.title, body=body.body,
                                       repository=body.repository or "", status=body.status, links=body.links)

        return await self._save(actor, form, record, save)


def record_page_routes(slot: EngineSlot, authenticate: Authenticate, may_change: StateCheck) -> list[BaseRoute]:
    pages = RecordPages(slot, authenticate, may_change)
    return [
        Route("/records", pages.list_page, methods=["GET"]),
        Route("/records", pages.create, methods=["POST"]),
        Route("/records/new", pages.new_form, methods=["GET"]),
        Route("/records/{record_id}", pages.detail, methods=["GET"]),
        Route("/records/{record_id}", pages.update, methods=["POST"]),
        Route("/records/{record_id}/edit", pages.edit_form, methods=["GET"]),
    ]


def flows_scope(record: RecordRow, engine: Engine) -> dict[str, Any]:
    """The Flows page with a record in scope: the record, and the profile its repository picks
    (or why none can)."""
    data = RecordData.model_validate(record.data)
    profile, unreachable = "", ""
    if data.repository:
        try:
            profile = select_profile_name(engine.deps.catalog, None, {}, "", record)
        except StartRefused as exc:
            unreachable = exc.message
    return {**record_ref(record), "repository": data.repository or "", "profile": profile,
            "unreachable": unreachable}
