"""Read-side queries beyond one draft: version history, a graph by label, match candidates.

Each function is one read transaction on the repository's sessions; none changes anything.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select

from services.common.errors import Conflict
from services.definitions.matching import Candidate
from services.definitions.models import Version
from services.definitions.repository import Repository, as_utc

DRAFT = "draft"
Label = int | str  # a version number, or "draft"


async def history(repo: Repository, tenant: str, key: str) -> list[dict[str, Any]]:
    """Every version of ``key``, oldest first; 404 without the process."""
    _, versions = await repo.get(tenant, key)
    return [{"version": v.version, "status": v.status,
             "approved_at": as_utc(v.approved_at).isoformat(), "copied_from": v.copied_from,
             "name": v.graph.get("name")} for v in versions]


async def graph_at(repo: Repository, tenant: str, key: str,
                   label: Label | None) -> tuple[Label, dict[str, Any]]:
    """The stored graph of a version, of the draft (``"draft"``) or of the latest version.

    404 without the process or version; 409 for ``"draft"`` when there is none.
    """
    if label == DRAFT:
        process, _ = await repo.get(tenant, key)
        if process.draft is None:
            raise Conflict(f"process {key!r} has no draft", code="no_draft")
        return DRAFT, dict(process.draft)
    row = await repo.get_version(tenant, key, label if isinstance(label, int) else None)
    return row.version, dict(row.graph)


async def approved_candidates(repo: Repository, tenant: str) -> list[Candidate]:
    """Each key's latest version whose status is ``approved`` (paused/deprecated never)."""
    async with repo.sessions() as s:
        latest = (select(Version.key, func.max(Version.version).label("v"))
                  .where(Version.tenant == tenant, Version.status == "approved")
                  .group_by(Version.key).subquery())
        rows = await s.scalars(select(Version).join(
            latest, (Version.key == latest.c.key) & (Version.version == latest.c.v))
            .where(Version.tenant == tenant))
        return [Candidate(r.key, r.version, as_utc(r.approved_at), dict(r.graph)) for r in rows]
