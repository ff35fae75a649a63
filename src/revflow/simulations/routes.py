"""``POST /workflows/{id}/versions/{n}/simulate`` (SPEC §11): a read, asked with a POST."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends

from revflow.deps import Now, ReadSession, SettingsDep, Viewer, reads_only
from revflow.errors import NotFound
from revflow.models import Version, Workflow
from revflow.problems import raises
from revflow.simulations import service
from revflow.simulations.schemas import SimulationIn, SimulationOut
from revflow.workflows.service import require_version, require_workflow, version_number

router = APIRouter(prefix="/api/v1", tags=["workflows"])


async def _version_to_simulate(
    workflow_id: str, number: str, principal: Viewer, session: ReadSession
) -> tuple[Workflow, Version]:
    """The workflow and version, looked up as a dependency so that their 404 comes before the
    body's 422 (SPEC §4 check order)."""
    workflow = await require_workflow(session, principal.account_id, workflow_id)
    return workflow, await require_version(session, workflow, version_number(workflow, number))


@router.post("/workflows/{workflow_id}/versions/{number}/simulate", response_model=SimulationOut)
@raises(NotFound)  # also for a contact_id that names no contact of the account
@reads_only
async def simulate_version(
    body: SimulationIn,
    target: Annotated[tuple[Workflow, Version], Depends(_version_to_simulate)],
    session: ReadSession,
    settings: SettingsDep,
    now: Now,
) -> dict[str, Any]:
    """Run version `n` for one contact on a simulated clock along a timeline of events and
    contact changes, and answer the path it takes, the messages and HTTP requests it would
    send, the goals it reaches and where it ends. Nothing is stored and nothing is sent; a
    viewer may ask. Any version may be simulated, whatever its status."""
    workflow, version = target
    return await service.simulate_version(session, workflow, version, body, settings, now)
