"""Static membership (`FLOWLINE_ROUTER_INSTANCE_ID`): the router joins its group as a named
member, and a worker killed and started again under the same name routes on with nothing lost.

Apache Kafka only (`make test-tansu` deselects it): Tansu 0.6 never completes a second static
member's join (bench/results/NOTES.md).
"""

from __future__ import annotations

import asyncio
import json

from aiokafka.admin import AIOKafkaAdminClient

from bench import workload
from bench.kafka_io import TopicReader, produce_all
from services.common.settings import Settings
from services.devstack import Stack
from tests.conftest import async_wait_for
from tests.integration.test_router_batches import router  # noqa: F401  (fixture)


async def member_ids(settings: Settings) -> list[str]:
    """The member ids of the router's consumer group. Kafka names a static member
    `<group.instance.id>-<uuid>`, a dynamic one `<client.id>-<uuid>` (faust's: faust-<version>)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    await admin.start()
    try:
        (response,) = await admin.describe_consumer_groups([settings.router_app_id])
        (group,) = response.groups
        (members,) = [field for field in group if isinstance(field, list)]
        return [member[0] for member in members]
    finally:
        await admin.close()


async def test_a_static_member_restarted_after_kill_9_routes_on(router: Settings) -> None:  # noqa: F811
    named = router.model_copy(update={"router_instance_id": "router-a"})
    commands = await TopicReader(named.kafka_bootstrap, named.commands_topic).start()
    stack = await asyncio.to_thread(lambda: Stack(named).start(("router",), timeout=90))
    try:
        await produce_all(named.kafka_bootstrap, named.requests_topic,
                          [workload.start_record("static-1")])
        await async_wait_for(lambda: len(commands.distinct) >= 1, 60, what="the first command")
        members = await member_ids(named)
        assert len(members) == 1 and members[0].startswith("router-a-"), members

        await asyncio.to_thread(stack.restart, "router")
        path = workload.PATH
        await produce_all(named.kafka_bootstrap, named.completions_topic,
                          [workload.completion_record("static-1", step, outcome)
                           for step, outcome in path])
        await async_wait_for(lambda: len(commands.distinct) >= len(path) + 1, 60,
                             what="a command per completion after the restart")
        steps = [json.loads(s.value)["step"] for s in commands.seen]
        assert list(dict.fromkeys(steps)) == [step for step, _ in path] + ["ship"]
        members = await member_ids(named)
        assert len(members) == 1 and members[0].startswith("router-a-"), members
    finally:
        await asyncio.to_thread(stack.stop)
        await commands.stop()
