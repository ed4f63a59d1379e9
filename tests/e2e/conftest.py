"""Fixtures of the end-to-end modules: one stack of processes per module, and its gateway.

Each module gets its own stack (module scope): its own topic prefix, databases and ports, with
the remanufacturing template approved, so modules never see each other's processes.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from services.common.settings import Settings
from services.definitions.templates import load_template
from services.devstack import Stack
from tests.conftest import free_port

PROCESS = "remanufacturing"


@pytest.fixture(scope="module")
def stack(broker: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    prefix = f"e{uuid.uuid4().hex[:8]}."
    settings = Settings(
        kafka_bootstrap=broker.bootstrap, fetch_max_wait_ms=broker.fetch_max_wait_ms,
        topic_prefix=prefix, partitions=4,
        data_dir=tmp_path_factory.mktemp("e2e"), gateway_port=free_port(),
        definitions_url=f"http://127.0.0.1:{free_port()}",
        tasks_url=f"http://127.0.0.1:{free_port()}", router_web_port=free_port(),
    )
    with Stack(settings) as s:
        s.start(timeout=90)
        api = httpx.Client(base_url=f"http://127.0.0.1:{settings.gateway_port}", timeout=10)
        assert api.post("/v1/processes", json=load_template(PROCESS)).status_code == 201
        approved = api.post(f"/v1/processes/{PROCESS}/approve")
        assert approved.status_code == 200, approved.text
        yield s


@pytest.fixture()
def api(stack: Stack) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=f"http://127.0.0.1:{stack.settings.gateway_port}",
                      timeout=10) as client:
        yield client
