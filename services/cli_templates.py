"""`flowline templates list|install`: the shipped process templates, from the command line.

`list` reads the templates shipped with this package (no service needed); `install` asks a
running definitions service (or the gateway in front of it) to install one as a draft, exactly
as `POST /v1/templates/{name}/install` does, and can approve it in the same go.
"""

from __future__ import annotations

import httpx
import typer

from services.common.settings import Settings

templates = typer.Typer(add_completion=False, no_args_is_help=True,
                        help="List or install the shipped process templates.")


@templates.command("list")
def list_() -> None:
    """Name, title, steps and department of each shipped template."""
    from services.definitions.templates import list_templates, load_template

    for name in list_templates():
        graph = load_template(name)
        where = " / ".join(x for x in (graph.get("department"), graph.get("category")) if x)
        typer.echo(f"{name:24} {graph.get('name', ''):40} {len(graph.get('steps', [])):3} steps"
                   + (f"  ({where})" if where else ""))


@templates.command()
def install(name: str,
            key: str | None = typer.Option(None, help="install under another process key"),
            approve: bool = typer.Option(False, help="approve the draft right away"),
            url: str | None = typer.Option(None, help="definitions service or gateway URL "
                                                      "(default FLOWLINE_DEFINITIONS_URL)"),
            tenant: str = typer.Option("default", help="X-Flowline-Tenant")) -> None:
    """Install template NAME as a draft (and approve it with --approve)."""
    base = (url or Settings().definitions_url).rstrip("/")
    headers = {"X-Flowline-Tenant": tenant}
    with httpx.Client(base_url=base, headers=headers, timeout=30) as client:
        try:
            answer = client.post(f"/v1/templates/{name}/install",
                                 json={"key": key} if key else None)
        except httpx.HTTPError as exc:
            typer.echo(f"cannot reach {base}: {exc}", err=True)
            raise typer.Exit(2) from exc
        _check(answer)
        installed = answer.json()
        typer.echo(f"installed {name} as draft {installed['key']} ({tenant})")
        if approve:
            approved = client.post(f"/v1/processes/{installed['key']}/approve")
            _check(approved)
            body = approved.json()
            typer.echo(f"approved {body['key']} v{body['version']}"
                       + ("" if body.get("published") else " (publishing in the background)"))


def _check(answer: httpx.Response) -> None:
    if answer.status_code < 400:
        return
    try:
        error = answer.json().get("error", {})
        message = f"{error.get('code')}: {error.get('message')}"
    except ValueError:
        message = answer.text[:500]
    typer.echo(f"HTTP {answer.status_code} {message}", err=True)
    raise typer.Exit(1)
