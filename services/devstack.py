"""Run the services as child processes on one machine: `flowline dev`, the demo, e2e tests.

The four services plus one `flowline worker` for the handlers of automated steps (seed 003's
analysis handlers).

Each service is its own process (`python -m services.cli <service>`), exactly as in production,
so a test can `kill -9` the router and start it again.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import IO

import httpx

from services.common.settings import Settings

SERVICES = ("definitions", "tasks", "router", "gateway", "worker")


def settings_env(settings: Settings) -> dict[str, str]:
    """The `FLOWLINE_*` variables that rebuild `settings` in a child process."""
    env: dict[str, str] = {}
    for name, value in settings.model_dump().items():
        if value is not None:
            env[f"FLOWLINE_{name.upper()}"] = str(value)
    return env


def health_url(settings: Settings, service: str) -> str | None:
    """Where the service answers /healthz; None for a worker (it serves nothing)."""
    return {
        "definitions": f"{settings.definitions_url}/healthz",
        "tasks": f"{settings.tasks_url}/healthz",
        "router": f"http://127.0.0.1:{settings.router_web_port}/healthz",
        "gateway": f"http://127.0.0.1:{settings.gateway_port}/healthz",
    }.get(service)


class Stack:
    """The services of one Flowline, started and stopped as processes we own."""

    def __init__(self, settings: Settings, log_dir: Path | None = None) -> None:
        self.settings = settings
        self.log_dir = log_dir or settings.data_dir / "logs"
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self._logs: dict[str, IO[bytes]] = {}

    def start(self, services: tuple[str, ...] = SERVICES, timeout: float = 60) -> Stack:
        for service in services:
            self.start_service(service)
        for service in services:
            self.wait_healthy(service, timeout)
        return self

    def start_service(self, service: str) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log = self._logs.get(service) or open(self.log_dir / f"{service}.log", "ab")  # noqa: SIM115
        self._logs[service] = log
        env = {**os.environ, **settings_env(self.settings), "PYTHONUNBUFFERED": "1"}
        self.procs[service] = subprocess.Popen(
            [sys.executable, "-m", "services.cli", service],
            stdout=log, stderr=subprocess.STDOUT, env=env,
            cwd=Path(__file__).resolve().parent.parent,
        )

    def wait_healthy(self, service: str, timeout: float = 60) -> None:
        url = health_url(self.settings, service)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            proc = self.procs.get(service)
            if proc is not None and proc.poll() is not None:
                raise RuntimeError(f"{service} exited with {proc.returncode}; "
                                   f"see {self.log_dir / (service + '.log')}")
            if url is None:
                return  # running is all a worker can show
            try:
                if httpx.get(url, timeout=1.0).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"{service} not healthy after {timeout}s: {url}")

    def kill(self, service: str, sig: int = signal.SIGKILL) -> None:
        """Signal one service (SIGKILL by default: a crash, not a shutdown) and reap it."""
        proc = self.procs.pop(service)
        proc.send_signal(sig)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:  # a hung stop: fail, but leave no process behind
            proc.kill()
            proc.wait(timeout=5)
            raise

    def restart(self, service: str, sig: int = signal.SIGKILL, timeout: float = 60) -> None:
        self.kill(service, sig)
        self.start_service(service)
        self.wait_healthy(service, timeout)

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for service, proc in list(self.procs.items()):
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
            self.procs.pop(service, None)
        for log in self._logs.values():
            log.close()
        self._logs.clear()

    def __enter__(self) -> Stack:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
