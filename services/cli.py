"""`flowline`: run a broker, a service, the whole stack, or the demo."""

from __future__ import annotations

import asyncio
import signal
import threading
import time
from pathlib import Path

import typer

from services.cli_templates import templates
from services.common.settings import Settings

cli = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Flowline: Kafka-native workflow routing.")


cli.add_typer(templates, name="templates")


def _settings() -> Settings:
    return Settings()


@cli.command()
def broker(kind: str = typer.Option("tansu", help="tansu (local, in memory) or kafka (KRaft)"),
           port: int = typer.Option(9092, help="port on 127.0.0.1"),
           data_dir: Path | None = typer.Option(None, help="where Apache Kafka keeps its log")
           ) -> None:
    """Start a local Kafka-compatible broker on 127.0.0.1 and wait (Ctrl-C stops it)."""
    from services.common.brokers import ApacheKafkaBroker, TansuBroker

    b = (TansuBroker(port=port) if kind == "tansu"
         else ApacheKafkaBroker(port=port, data_dir=data_dir))
    b.start()
    typer.echo(f"{b.kind} broker ready: FLOWLINE_KAFKA_BOOTSTRAP={b.bootstrap}")
    _wait_for_signal()
    b.stop()


@cli.command()
def topics() -> None:
    """Create every Flowline topic (idempotent)."""
    from services.common.kafka import create_topics, topic_table

    settings = _settings()
    asyncio.run(create_topics(settings))
    for name, partitions, config in topic_table(settings):
        typer.echo(f"{name:40} partitions={partitions} {config or ''}")


@cli.command()
def router() -> None:
    """Run a router worker (faust)."""
    from services.router.main import run

    run(_settings())


@cli.command()
def definitions() -> None:
    """Run the definitions service (HTTP)."""
    from services.definitions.main import run

    run(_settings())


@cli.command()
def tasks() -> None:
    """Run the tasks service (inbox, journey read model; HTTP)."""
    from services.tasks.main import run

    run(_settings())


@cli.command()
def worker(
    handler: list[str] = typer.Option([], "--handler", "-H",
                                      help="a handler to run (repeat; default: all registered)"),
    module: list[str] = typer.Option([], "--module", "-m",
                                     help="import a module that registers handlers (repeat)"),
    url: str | None = typer.Option(None, help="the tasks service (default FLOWLINE_TASKS_URL)"),
    name: str | None = typer.Option(None, help="this worker's name in leases and logs"),
    lease: float = typer.Option(30.0, help="lease seconds; heartbeats every third of it"),
    concurrency: int = typer.Option(1, min=1, help="jobs run at once"),
) -> None:
    """Run registered Python handlers for automated steps (leased jobs from the tasks service)."""
    from services.workers.main import run

    settings = _settings()
    run(url or settings.tasks_url, handlers=handler, modules=module, name=name, lease_s=lease,
        concurrency=concurrency, log_level=settings.log_level)


@cli.command()
def gateway() -> None:
    """Run the public API and web page."""
    from services.gateway.main import run

    run(_settings())


@cli.command()
def dev(broker_kind: str = typer.Option("tansu", "--broker", help="tansu or kafka")) -> None:
    """Start a local broker and all four services; Ctrl-C stops everything."""
    from services.demo.stack import dev_stack

    _terminate_like_ctrl_c()

    with dev_stack(broker_kind) as (stack, b):
        s = stack.settings
        typer.echo(f"broker {b.kind} at {b.bootstrap}")
        typer.echo(f"web page and API: http://127.0.0.1:{s.gateway_port}/  (OpenAPI: /docs)")
        typer.echo(f"logs in {stack.log_dir}")
        _wait_for_signal()


@cli.command()
def demo(parts: int = typer.Option(50, help="how many parts to remanufacture"),
         seed: int = typer.Option(7, help="seed for simulated pass/fail results"),
         broker_kind: str = typer.Option("tansu", "--broker", help="tansu or kafka"),
         attach: str | None = typer.Option(
             None, help="use a running stack at this gateway URL instead of starting one"),
         linger: bool = typer.Option(False, help="keep the stack running after the summary"),
         ) -> None:
    """Remanufacture parts through inspection and rework, live in the terminal and the web."""
    from services.demo.run import run_demo

    _terminate_like_ctrl_c()

    raise typer.Exit(run_demo(parts=parts, seed=seed, broker_kind=broker_kind, attach=attach,
                              linger=linger))


def _terminate_like_ctrl_c() -> None:
    """SIGTERM (`kill`, `timeout`) unwinds like Ctrl-C, so the broker and services this command
    started are stopped on the way out; by default it ends Python at once and they run on."""
    signal.signal(signal.SIGTERM, signal.default_int_handler)


def _wait_for_signal() -> None:
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    while not stop.is_set():
        time.sleep(0.2)


def main() -> None:
    cli()


if __name__ == "__main__":
    main()
