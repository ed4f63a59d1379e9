"""Templates and category matching over real HTTP (uvicorn, SQLite, the session's broker)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from schemas.graph import ProcessVersion
from services.common.settings import Settings
from services.definitions.templates import list_templates, load_template
from tests.integration.test_definitions_api import consume_until, error_code

pytestmark = pytest.mark.integration
NEW = {"it-support", "document-approval", "capa", "manufacturing-analysis", "asset-import"}


# --------------------------------------------------------------------------- templates


def test_list_templates(api: httpx.Client) -> None:
    listed = api.get("/v1/templates")
    assert listed.status_code == 200
    by_name = {t["name"]: t for t in listed.json()}
    assert set(by_name) == set(list_templates()) and NEW | {"remanufacturing"} <= set(by_name)
    it = by_name["it-support"]
    assert (it["key"], it["title"], it["department"], it["category"], it["sub_category"]) == (
        "it-support", "IT Support Request", "IT", "Technology", "Support Request")
    assert it["steps"] == len(load_template("it-support")["steps"])


@pytest.mark.parametrize("name", sorted(NEW | {"remanufacturing"}))
def test_install_validate_approve_publish(api: httpx.Client, live: Settings,
                                          name: str) -> None:
    installed = api.post(f"/v1/templates/{name}/install")
    assert installed.status_code == 201, installed.text
    assert installed.json() == {"key": name, "tenant": "default", "status": "draft",
                                "template": name, "copied_from": f"template:{name}"}
    assert api.post(f"/v1/processes/{name}/validate").json() == {"valid": True, "findings": []}
    approved = api.post(f"/v1/processes/{name}/approve").json()
    assert approved["version"] == 1 and approved["published"] is True
    ((_, event),) = consume_until(live, f"default/{name}/1")
    value = ProcessVersion.model_validate(event.data)
    assert value.copied_from == f"template:{name}"
    assert len(value.steps) == len(load_template(name)["steps"])


def test_install_conflicts_and_other_keys(api: httpx.Client) -> None:
    assert api.post("/v1/templates/capa/install").status_code == 201
    again = api.post("/v1/templates/capa/install")
    assert again.status_code == 409 and error_code(again) == "process_exists"
    api.post("/v1/processes/capa/approve")
    # Still 409 once the draft is approved: the key exists; install under another key.
    assert api.post("/v1/templates/capa/install").status_code == 409
    other = api.post("/v1/templates/capa/install", json={"key": "capa-plant-2"})
    assert other.status_code == 201 and other.json()["key"] == "capa-plant-2"
    assert api.get("/v1/processes/capa-plant-2").json()["draft"]["name"] == \
        load_template("capa")["name"]
    acme = {"X-Flowline-Tenant": "acme"}
    assert api.post("/v1/templates/capa/install", headers=acme).json()["tenant"] == "acme"
    for path, body, status in (("/v1/templates/nope/install", None, 404),
                               ("/v1/templates/capa/install", {"key": "bad key"}, 422),
                               ("/v1/templates/capa/install", {"key": "match"}, 422)):
        refused = api.post(path, json=body)
        assert refused.status_code == status, refused.text
        error_code(refused)


# --------------------------------------------------------------------------- matching


def publish(api: httpx.Client, key: str, **meta: Any) -> int:
    graph = {**load_template("it-support"), "key": key, **meta}
    graph = {k: v for k, v in graph.items() if v is not None}
    assert api.post("/v1/processes", json=graph).status_code == 201
    approved = api.post(f"/v1/processes/{key}/approve")
    assert approved.status_code == 200, approved.text
    return int(approved.json()["version"])


def match(api: httpx.Client, **params: str) -> httpx.Response:
    return api.get("/v1/processes/match", params={"department": "IT",
                                                  "category": "Technology", **params})


def test_match_prefers_the_exact_sub_category(api: httpx.Client) -> None:
    publish(api, "general", sub_category=None)
    publish(api, "vpn", sub_category="VPN", name="VPN access")
    publish(api, "hr", department="HR")
    found = match(api, sub_category="VPN")
    assert found.status_code == 200, found.text
    assert found.json() == {"key": "vpn", "version": 1, "name": "VPN access",
                            "department": "IT", "category": "Technology",
                            "sub_category": "VPN", "match": "exact"}
    general = match(api, sub_category="Printer").json()
    assert (general["key"], general["match"], general["sub_category"]) == (
        "general", "general", None)
    assert match(api).json()["key"] == "general"
    assert match(api, sub_category="").json()["key"] == "general"


def test_match_skips_paused_and_deprecated_versions(api: httpx.Client) -> None:
    publish(api, "general", sub_category=None)
    publish(api, "vpn", sub_category="VPN")
    assert publish(api, "vpn", sub_category="VPN") == 2
    assert api.post("/v1/processes/vpn/pause").status_code == 200  # v2 paused: v1 is in use
    assert match(api, sub_category="VPN").json()["version"] == 1
    api.post("/v1/processes/vpn/deprecate?version=1")
    assert match(api, sub_category="VPN").json()["key"] == "general"
    api.post("/v1/processes/vpn/resume?version=2")
    assert match(api, sub_category="VPN").json()["version"] == 2


def test_no_match_is_a_clear_404(api: httpx.Client) -> None:
    publish(api, "vpn", sub_category="VPN")
    missing = match(api, sub_category="Printer")
    assert missing.status_code == 404 and error_code(missing) == "no_matching_process"
    body = missing.json()["error"]
    assert "Printer" in body["message"]
    assert body["details"] == {"department": "IT", "category": "Technology",
                               "sub_category": "Printer"}
    assert match(api, department="it").status_code == 404  # exact, case included
    assert api.get("/v1/processes/match", params={"category": "x"}).status_code == 422
    assert match(api, sub_category="VPN").status_code == 200
    assert api.get("/v1/processes/match", params={"department": "IT", "category": "Technology",
                                                  "sub_category": "VPN"},
                   headers={"X-Flowline-Tenant": "acme"}).status_code == 404


def test_match_is_a_reserved_key(api: httpx.Client) -> None:
    refused = api.post("/v1/processes", json={**load_template("capa"), "key": "match"})
    assert refused.status_code == 422 and error_code(refused) == "key_reserved"


# --------------------------------------------------------------------------- the CLI


def test_cli_lists_and_installs_templates(api: httpx.Client) -> None:
    from typer.testing import CliRunner

    from services.cli import cli

    runner = CliRunner()
    listed = runner.invoke(cli, ["templates", "list"])
    assert listed.exit_code == 0, listed.output
    assert {line.split()[0] for line in listed.output.splitlines()} == set(list_templates())
    url = str(api.base_url)
    done = runner.invoke(cli, ["templates", "install", "capa", "--key", "capa-cli",
                               "--approve", "--url", url])
    assert done.exit_code == 0, done.output
    assert "installed capa as draft capa-cli" in done.output
    assert "approved capa-cli v1" in done.output
    assert api.get("/v1/processes/capa-cli/versions").json()[0]["version"] == 1
    again = runner.invoke(cli, ["templates", "install", "capa", "--key", "capa-cli", "--url", url])
    assert again.exit_code == 1 and "HTTP 409" in again.output
    missing = runner.invoke(cli, ["templates", "install", "nope", "--url", url])
    assert missing.exit_code == 1 and "template_not_found" in missing.output
