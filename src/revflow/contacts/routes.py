"""Contacts and events (SPEC §4)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import JSONResponse, Response

from revflow.contacts import service
from revflow.contacts.schemas import (
    ContactCreate,
    ContactList,
    ContactOut,
    ContactPatch,
    ContactUpsert,
    EventIn,
    EventOut,
)
from revflow.deps import Editor, Now, ReadSession, Viewer, WriteSession, wake_worker
from revflow.errors import ExternalIdTaken, NotFound
from revflow.kit import idempotency
from revflow.kit.pagination import (
    DEFAULT_LIMIT,
    MAX_LIMIT,
    time_id_after,
    time_id_next,
)
from revflow.kit.responses import committed
from revflow.kit.transactions import commit
from revflow.models import Contact
from revflow.problems import raises

router = APIRouter(prefix="/api/v1", tags=["contacts"])


def contact_out(contact: Contact) -> dict[str, Any]:
    return ContactOut.model_validate(contact, from_attributes=True).model_dump(mode="json")


@router.post(
    "/contacts",
    status_code=201,
    response_model=ContactOut,
    dependencies=[Depends(idempotency.key_header)],
)
@raises(ExternalIdTaken)
async def create_contact(
    request: Request, body: ContactCreate, principal: Editor, session: WriteSession, now: Now
) -> JSONResponse:
    claim = await idempotency.claim(session, request, principal.account_id)
    if claim is not None and claim.replay is not None:
        return claim.replay
    contact = await service.create_contact(session, principal.account_id, body, now)
    response = await committed(
        session,
        claim,
        contact_out(contact),
        201,
        {"Location": f"/api/v1/contacts/{contact.id}"},
    )
    wake_worker(request)
    return response


@router.get("/contacts", response_model=ContactList)
async def list_contacts(
    principal: Viewer,
    session: ReadSession,
    tag: str | None = None,
    email: str | None = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = DEFAULT_LIMIT,
    cursor: str | None = None,
) -> dict[str, Any]:
    filters = {"list": "contacts", "tag": tag, "email": email}
    after = time_id_after(cursor, filters)
    rows = await service.list_contacts(
        session,
        principal.account_id,
        after=after,
        limit=limit + 1,
        tag=tag,
        email=email,
    )
    next_cursor = time_id_next(rows, limit, filters)
    return {"items": [contact_out(c) for c in rows[:limit]], "next_cursor": next_cursor}


@router.get("/contacts/{contact_id}", response_model=ContactOut)
async def get_contact(contact_id: str, principal: Viewer, session: ReadSession) -> dict[str, Any]:
    return contact_out(await service.require_contact(session, principal.account_id, contact_id))


async def _contact_to_change(contact_id: str, principal: Editor, session: WriteSession) -> Contact:
    """The contact of a change, looked up as a dependency so its 404 comes before the body's
    422 (SPEC §4 check order)."""
    return await service.require_contact(session, principal.account_id, contact_id)


@router.patch("/contacts/{contact_id}", response_model=ContactOut)
async def patch_contact(
    request: Request,
    contact: Annotated[Contact, Depends(_contact_to_change)],
    body: ContactPatch,
    principal: Editor,
    session: WriteSession,
    now: Now,
) -> dict[str, Any]:
    await service.patch_contact(session, principal.account_id, contact, body, now)
    answer = contact_out(contact)
    await commit(session)
    wake_worker(request)
    return answer


@router.put(
    "/contacts/by-external-id/{external_id}",
    response_model=ContactOut,
    responses={201: {"model": ContactOut, "description": "Created"}},
)
@raises(ExternalIdTaken)
async def upsert_contact(
    request: Request,
    external_id: Annotated[
        str,
        Path(
            min_length=1,
            max_length=200,
            pattern=r"^[^\x00]+$",
            description="The embedding product's id of the contact (no NUL character).",
        ),
    ],
    body: ContactUpsert,
    principal: Editor,
    session: WriteSession,
    now: Now,
) -> JSONResponse:
    contact, created = await service.upsert_contact(
        session, principal.account_id, external_id, body, now
    )
    answer = contact_out(contact)
    await commit(session)
    wake_worker(request)
    return JSONResponse(answer, status_code=201 if created else 200)


@router.delete("/contacts/{contact_id}", status_code=204)
async def erase_contact(
    contact_id: str, principal: Editor, session: WriteSession, now: Now
) -> Response:
    contact = await service.require_contact(session, principal.account_id, contact_id)
    await service.erase_contact(session, principal.account_id, contact, now)
    await commit(session)
    return Response(status_code=204)


@router.post(
    "/events",
    status_code=202,
    response_model=EventOut,
    dependencies=[Depends(idempotency.key_header)],
)
@raises(NotFound)
async def post_event(
    request: Request, body: EventIn, principal: Editor, session: WriteSession, now: Now
) -> JSONResponse:
    claim = await idempotency.claim(session, request, principal.account_id)
    if claim is not None and claim.replay is not None:
        return claim.replay
    advanced, enrolled = await service.record_event(session, principal.account_id, body, now)
    answer = EventOut(
        contact_id=body.contact_id,
        name=body.name,
        executions_advanced=advanced,
        enrolled=enrolled,
    ).model_dump(mode="json")
    response = await committed(session, claim, answer, 202)
    wake_worker(request)
    return response
