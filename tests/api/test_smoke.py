from tests.support.tenants import Tenant
from tests.support.workflows import create_version, create_workflow, simple_definition


async def test_create_publish_and_read(tenant: Tenant) -> None:
    wf = await create_workflow(tenant)
    v1 = await create_version(tenant, wf["id"], simple_definition(), None, publish=True)
    assert v1["number"] == 1 and v1["status"] == "published" and v1["semver"] == "1.0.0"
    v2 = await create_version(tenant, wf["id"], simple_definition("Hello"), 1)
    assert v2["semver"] == "1.0.1" and v2["status"] == "draft"
    listing = (await tenant.request("GET", f"/api/v1/workflows/{wf['id']}/versions")).json()
    assert [v["number"] for v in listing["items"]] == [2, 1]
    cmp = await tenant.request(
        "GET", f"/api/v1/workflows/{wf['id']}/versions/compare", params={"from": 1, "to": 2}
    )
    assert cmp.status_code == 200, cmp.text
    assert cmp.json()["summary"]["steps_modified"] == 1
