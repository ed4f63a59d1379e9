"""Drafts, versions and the outbox in SQL: each public method is one transaction.

Domain rules that need the database live here (draft exists? next version number? allowed
status change?); the HTTP layer only maps requests to these calls.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from schemas.graph import ProcessGraph, ProcessVersion
from schemas.topics import DEFINITION_V1
from services.common.errors import Conflict, Invalid, NotFound
from services.definitions.findings import has_errors
from services.definitions.models import Outbox, Process, Version
from services.definitions.validation import validate

# action -> (statuses it may start from, status it leads to)
TRANSITIONS: dict[str, tuple[frozenset[str], str]] = {
    "pause": (frozenset({"approved"}), "paused"),
    "resume": (frozenset({"paused"}), "approved"),
    "deprecate": (frozenset({"approved", "paused"}), "deprecated"),
}
# Keys that would shadow a fixed path under /v1/processes (GET /v1/processes/match).
RESERVED_KEYS = frozenset({"match"})
_VERSION_FIELDS = ("version", "status", "approved_at", "copied_from")


def as_utc(moment: datetime) -> datetime:
    """SQLite hands back naive datetimes; everything we store is UTC."""
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def to_process_version(row: Version) -> ProcessVersion:
    """The complete value published for a version (never a delta)."""
    return ProcessVersion.model_validate({
        **row.graph,
        "tenant": row.tenant,
        "version": row.version,
        "status": row.status,
        "approved_at": as_utc(row.approved_at).isoformat(),
        "copied_from": row.copied_from,
    })


class Repository:
    """The definitions service's data access; ``clock`` is injected so tests can pin time."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession], topic: str,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.sessions = sessions
        self.topic = topic
        self.clock = clock
        # SQLite ignores SELECT ... FOR UPDATE, so two approvals in this process could both read
        # the draft and make versions N+1 and N+2 (caught by test_db_races in CI). A lock per
        # process key serializes them here; FOR UPDATE still guards across processes on
        # PostgreSQL (SQLite deployments are a single process by nature).
        self._approving: dict[tuple[str, str], asyncio.Lock] = {}

    async def _process(self, s: AsyncSession, tenant: str, key: str,
                       lock: bool = False) -> Process:
        """The process row; `lock` holds it (SELECT ... FOR UPDATE) until the transaction ends."""
        query = select(Process).where(Process.tenant == tenant, Process.key == key)
        row = await s.scalar(query.with_for_update() if lock else query)
        if row is None:
            raise NotFound(f"no process {key!r}")
        return row

    async def _versions(self, s: AsyncSession, tenant: str, key: str) -> list[Version]:
        rows = await s.scalars(select(Version).where(Version.tenant == tenant, Version.key == key)
                               .order_by(Version.version))
        return list(rows)

    async def create_draft(self, tenant: str, graph: ProcessGraph,
                           copied_from: str | None = None) -> Process:
        """A new draft; 409 when the key already has one (existing versions are fine)."""
        if graph.key in RESERVED_KEYS:
            raise Invalid(f"{graph.key!r} is reserved: GET /v1/processes/{graph.key} is another "
                          "endpoint; choose another key", code="key_reserved")
        try:
            async with self.sessions.begin() as s:
                row = await s.scalar(select(Process).where(Process.tenant == tenant,
                                                           Process.key == graph.key))
                if row is not None and row.draft is not None:
                    raise Conflict(f"process {graph.key!r} already has a draft; PUT to edit it",
                                   code="draft_exists")
                if row is None:
                    row = Process(tenant=tenant, key=graph.key)
                    s.add(row)
                row.draft, row.copied_from = graph.dump(), copied_from
        except IntegrityError as exc:  # two creations of a new key raced; the other one won
            raise Conflict(f"process {graph.key!r} was created concurrently; PUT to edit it",
                           code="draft_exists") from exc
        return row

    async def update_draft(self, tenant: str, key: str, graph: ProcessGraph) -> Process:
        """Replace the draft; 404 without the process, 409 when there is no draft to edit."""
        async with self.sessions.begin() as s:
            row = await self._process(s, tenant, key)
            if row.draft is None:
                raise Conflict(f"process {key!r} has no draft; approved versions are immutable "
                               "(POST /v1/processes to start a new draft)", code="no_draft")
            row.draft = graph.dump()
        return row

    async def patch_draft(self, tenant: str, key: str,
                          change: Callable[[ProcessGraph], ProcessGraph]) -> Process:
        """Apply ``change`` to the draft in one transaction (partial edits: details, graph).

        404 without the process, 409 without a draft, like ``update_draft``.
        """
        async with self.sessions.begin() as s:
            row = await self._process(s, tenant, key)
            if row.draft is None:
                raise Conflict(f"process {key!r} has no draft; approved versions are immutable "
                               "(POST /v1/processes to start a new draft)", code="no_draft")
            row.draft = change(ProcessGraph.model_validate(row.draft)).dump()
        return row

    async def install(self, tenant: str, graph: ProcessGraph, copied_from: str) -> Process:
        """A draft for a key that does not exist yet; 409 ``process_exists`` otherwise."""
        async with self.sessions() as s:
            if await s.scalar(select(Process.id).where(Process.tenant == tenant,
                                                       Process.key == graph.key)):
                raise Conflict(f"process {graph.key!r} already exists; install under another "
                               "key or edit it", code="process_exists")
        return await self.create_draft(tenant, graph, copied_from=copied_from)

    async def list_processes(self, tenant: str) -> list[tuple[Process, Version | None]]:
        """Every process of ``tenant`` with its latest version (or None)."""
        async with self.sessions() as s:
            latest = (select(Version.key, func.max(Version.version).label("v"))
                      .where(Version.tenant == tenant).group_by(Version.key).subquery())
            query = (select(Process, Version).where(Process.tenant == tenant)
                     .outerjoin(latest, latest.c.key == Process.key)
                     .outerjoin(Version, (Version.tenant == tenant) & (Version.key == Process.key)
                                & (Version.version == latest.c.v))
                     .order_by(Process.key))
            return [(p, v) for p, v in (await s.execute(query)).tuples()]

    async def get(self, tenant: str, key: str) -> tuple[Process, list[Version]]:
        async with self.sessions() as s:
            return await self._process(s, tenant, key), await self._versions(s, tenant, key)

    async def get_version(self, tenant: str, key: str, version: int | None = None) -> Version:
        """Version ``version``, or the latest; 404 when there is none."""
        async with self.sessions() as s:
            return await self._pick(s, tenant, key, version)

    async def _pick(self, s: AsyncSession, tenant: str, key: str, version: int | None) -> Version:
        query = select(Version).where(Version.tenant == tenant, Version.key == key)
        query = (query.where(Version.version == version) if version is not None
                 else query.order_by(Version.version.desc()).limit(1))
        row = await s.scalar(query)
        if row is None:
            which = f"version {version}" if version is not None else "approved version"
            raise NotFound(f"process {key!r} has no {which}")
        return row

    async def draft_graph(self, tenant: str, key: str) -> ProcessGraph:
        """The draft as a graph; 404 without the process, 409 without a draft."""
        process, _ = await self.get(tenant, key)
        if process.draft is None:
            raise Conflict(f"process {key!r} has no draft", code="no_draft")
        return ProcessGraph.model_validate(process.draft)

    async def approve(self, tenant: str, key: str) -> tuple[Version, int]:
        """Turn the draft into version N+1 and queue its publication, atomically.

        Returns the version and its outbox id. 422 ``invalid_graph`` with the findings when
        validation finds errors (warnings do not block).
        """
        lock = self._approving.setdefault((tenant, key), asyncio.Lock())
        async with lock:
            return await self._approve(tenant, key)

    async def _approve(self, tenant: str, key: str) -> tuple[Version, int]:
        try:
            async with self.sessions.begin() as s:
                # Locked: on PostgreSQL a second approval would otherwise read the same draft
                # and, once the first commits, approve it again as version N+2.
                process = await self._process(s, tenant, key, lock=True)
                if process.draft is None:
                    raise Conflict(f"process {key!r} has no draft to approve", code="no_draft")
                findings = validate(ProcessGraph.model_validate(process.draft))
                if has_errors(findings):
                    raise Invalid(f"process {key!r} is not valid; fix the findings and retry",
                                  code="invalid_graph",
                                  details={"findings": [f.as_dict() for f in findings]})
                latest = await s.scalar(select(func.max(Version.version)).where(
                    Version.tenant == tenant, Version.key == key))
                row = Version(tenant=tenant, key=key, version=(latest or 0) + 1,
                              graph=process.draft, status="approved", approved_at=self.clock(),
                              copied_from=process.copied_from)
                s.add(row)
                process.draft, process.copied_from = None, None
                await s.flush()
                outbox = self._outbox(row, event_id=to_process_version(row).topic_key)
                s.add(outbox)
                await s.flush()
                return row, outbox.id
        except IntegrityError as exc:  # another approval of this key won the race
            raise Conflict(f"process {key!r} was approved concurrently; retry") from exc

    async def transition(self, tenant: str, key: str, action: str,
                         version: int | None = None) -> tuple[Version, int]:
        """pause / resume / deprecate a version (latest by default) and queue re-publication."""
        allowed, target = TRANSITIONS[action]
        async with self.sessions.begin() as s:
            row = await self._pick(s, tenant, key, version)
            if row.status not in allowed:
                raise Conflict(f"cannot {action} {key!r} version {row.version}: it is "
                               f"{row.status}", code="invalid_transition",
                               details={"status": row.status, "action": action})
            row.status = target
            outbox = self._outbox(row, event_id=None)
            s.add(outbox)
            await s.flush()
            return row, outbox.id

    def _outbox(self, row: Version, event_id: str | None) -> Outbox:
        value = to_process_version(row)
        # A status change is a new event about the same version: its id must differ from the
        # approval's, or an idempotent consumer would drop it as a duplicate.
        eid = event_id or f"{value.topic_key}/{row.status}/{self.clock().timestamp():.6f}"
        return Outbox(tenant=row.tenant, topic=self.topic, key=value.topic_key,
                      ce_type=DEFINITION_V1, event_id=eid, payload=value.dump(),
                      created_at=self.clock())

    async def duplicate(self, tenant: str, key: str, new_key: str,
                        version: int | None = None) -> Process:
        """A new draft ``new_key`` copied from a version (latest by default) or the draft."""
        async with self.sessions() as s:
            process = await self._process(s, tenant, key)
            versions = await self._versions(s, tenant, key)
        if version is not None or versions:
            source = await self.get_version(tenant, key, version)
            graph: dict[str, Any] = dict(source.graph)
            lineage = f"{key}/{source.version}"
        elif process.draft is not None:
            graph, lineage = dict(process.draft), f"{key}/draft"
        else:
            raise Conflict(f"process {key!r} has nothing to copy", code="nothing_to_copy")
        for field in _VERSION_FIELDS:
            graph.pop(field, None)
        async with self.sessions() as s:
            if await s.scalar(select(Process.id).where(Process.tenant == tenant,
                                                       Process.key == new_key)):
                raise Conflict(f"process {new_key!r} already exists", code="process_exists")
        copy = ProcessGraph.model_validate({**graph, "key": new_key, "tenant": tenant})
        return await self.create_draft(tenant, copy, copied_from=lineage)
