"""The tasks service's jobs API, as a worker calls it (httpx, retried on network errors)."""

from __future__ import annotations

from typing import Any

import httpx
from tenacity import (
    AsyncRetrying,
    retry_if_exception,
    stop_after_delay,
    wait_exponential,
)


class LeaseLost(Exception):
    """409 `stale_lease`: the job is no longer ours (the lease expired, or it was retired)."""


class Unavailable(Exception):
    """The tasks service did not answer usefully; the caller may try again later."""


def _transient(exc: BaseException) -> bool:
    return isinstance(exc, httpx.TransportError | Unavailable)


class JobsClient:
    """Claim, heartbeat, progress, logs, complete and fail over HTTP.

    Calls are retried for up to `retry_for` seconds on network errors and 5xx answers (the same
    lease token makes a repeated call safe); a 409 raises LeaseLost at once.
    """

    def __init__(self, base_url: str, *, timeout: float = 10.0, retry_for: float = 10.0,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        self._http = httpx.AsyncClient(base_url=base_url.rstrip("/"), timeout=timeout,
                                       transport=transport)
        self.retry_for = retry_for

    async def aclose(self) -> None:
        await self._http.aclose()

    async def claim(self, worker: str, handlers: list[str],
                    lease_s: float) -> dict[str, Any] | None:
        """A leased job (`{lease_token, lease_s, job}`), or None when none is ready. Not
        retried: a lost answer would strand a lease, which then simply expires."""
        try:
            answer = await self._http.post("/v1/jobs/claim", json={
                "worker": worker, "handlers": handlers, "lease_s": lease_s})
        except httpx.TransportError as exc:
            raise Unavailable(f"claim: {type(exc).__name__}: {exc}") from exc
        if answer.status_code == 204:
            return None
        return self._json(answer, "claim")

    async def heartbeat(self, job_id: str, token: str, lease_s: float) -> None:
        await self._post(job_id, "heartbeat", {"lease_token": token, "lease_s": lease_s})

    async def progress(self, job_id: str, token: str, lease_s: float, progress: float,
                       message: str | None) -> None:
        await self._post(job_id, "progress", {"lease_token": token, "lease_s": lease_s,
                                              "progress": progress, "message": message})

    async def logs(self, job_id: str, token: str, entries: list[dict[str, Any]]) -> None:
        for start in range(0, len(entries), 500):
            await self._post(job_id, "logs", {"lease_token": token,
                                              "entries": entries[start:start + 500]})

    async def complete(self, job_id: str, token: str, *, output: dict[str, Any],
                       outcome: str | None, measurements: dict[str, Any] | None,
                       stats: dict[str, Any]) -> dict[str, Any]:
        return await self._post(job_id, "complete", {
            "lease_token": token, "output": output, "outcome": outcome,
            "measurements": measurements, "stats": stats})

    async def fail(self, job_id: str, token: str, error: str, stack: str | None,
                   retryable: bool) -> dict[str, Any]:
        return await self._post(job_id, "fail", {
            "lease_token": token, "error": error[:4000],
            "stack": stack[-20000:] if stack else None, "retryable": retryable})

    async def _post(self, job_id: str, action: str, body: dict[str, Any]) -> dict[str, Any]:
        # Job ids are `instance/step/visit`: their slashes are path separators on the server.
        path = f"/v1/jobs/{job_id}/{action}"
        async for attempt in AsyncRetrying(
            stop=stop_after_delay(self.retry_for), wait=wait_exponential(0.2, max=2.0),
            retry=retry_if_exception(_transient), reraise=True,
        ):
            with attempt:
                try:
                    answer = await self._http.post(path, json=body)
                except httpx.TransportError as exc:
                    raise Unavailable(f"{action}: {type(exc).__name__}: {exc}") from exc
                return self._json(answer, action)
        raise AssertionError("unreachable: tenacity either returns or raises")

    @staticmethod
    def _json(answer: httpx.Response, action: str) -> dict[str, Any]:
        if answer.status_code == 409:
            try:
                why = str(answer.json()["error"]["message"])
            except (ValueError, KeyError, TypeError):
                why = answer.text[:500]
            raise LeaseLost(why)
        if answer.status_code >= 500:
            raise Unavailable(f"{action}: the tasks service answered {answer.status_code}")
        if answer.status_code >= 400:
            raise ValueError(f"{action}: {answer.status_code} {answer.text[:500]}")
        data: dict[str, Any] = answer.json()
        return data
