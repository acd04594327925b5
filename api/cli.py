"""The ``sopagent`` command line: demo, worker, SOP validation and graphs."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape

from knowledge.settings import get_settings

app = typer.Typer(help="sopagent: private-domain customer-operations SOPs on WeCom.", no_args_is_help=True)
sop_app = typer.Typer(help="Validate and inspect SOP YAML.", no_args_is_help=True)
app.add_typer(sop_app, name="sop")
kb_app = typer.Typer(help="Import shop knowledge: products, orders, logistics, FAQ, policies.", no_args_is_help=True)
app.add_typer(kb_app, name="kb")
db_app = typer.Typer(help="The database schema: versioned migrations (PostgreSQL).", no_args_is_help=True)
wecom_app = typer.Typer(help="WeCom: bring in what the corp already has.", no_args_is_help=True)
operator_app = typer.Typer(help="Operator accounts: the people who log in to the console.", no_args_is_help=True)
app.add_typer(operator_app, name="operator")
app.add_typer(wecom_app, name="wecom")
app.add_typer(db_app, name="db")
console = Console(width=150)
# errors name files and lines: never wrapped mid-path, so they can be copied and grepped
errors = Console(stderr=True, soft_wrap=True)


@app.command()
def demo(
    home: Annotated[Path | None, typer.Option(help="where the demo's stores go (wiped first)")] = None,
    days: Annotated[int, typer.Option(min=1, max=120)] = 30,
    shop_days: Annotated[int, typer.Option(min=0, max=60, help="days of the busier shop behind the report "
                                                               "(0: no report)")] = 14,
    shop_customers: Annotated[int, typer.Option(min=1, max=5000, help="its new customers")] = 300,
) -> None:
    """Run the scripted 30-day demo on the embedded defaults with a simulated clock, then a busier shop's 14 days
    and its daily review report (the path is printed)."""
    from api.demo import run_demo

    started = time.perf_counter()
    settings = get_settings()
    where = home or settings.home / "demo"
    run_demo(where, days=days, console=console, shop_days=shop_days, shop_customers=shop_customers)
    console.print(f"demo finished in {time.perf_counter() - started:.1f}s")
    console.print(f"运营控制台：SOPAGENT_HOME={where} SOPAGENT_OPERATOR_TOKEN=dev sopagent serve --no-worker，"
                  "然后打开 http://127.0.0.1:8000/console/ 用令牌 dev 登录", highlight=False, markup=False)


@app.command()
def worker(
    until: Annotated[str | None, typer.Option(help="simulate: advance a persisted simulated clock to this "
                                                   "ISO time, then exit")] = None,
    start: Annotated[str | None, typer.Option(help="simulated clock start when none is saved yet")] = None,
    interval: Annotated[float, typer.Option(help="seconds between polls on the wall clock")] = 1.0,
) -> None:
    """Claim due touchpoints and dispatch the outbox (wall clock, or a simulated clock with --until)."""
    from agent.runtime import Runtime
    from knowledge.clock import SimClock, SystemClock

    settings = get_settings()
    if until is not None:
        clock = SimClock(datetime.fromisoformat(start or until))
        runtime = Runtime.build(settings, clock=clock)
        saved = runtime.saved_clock("worker")
        if saved is not None and saved > clock.now():
            clock.set(saved)  # a restarted simulated worker continues where it stopped
        try:
            handled = runtime.run_until(datetime.fromisoformat(until), persist_as="worker")
        except ValueError as exc:
            errors.print(f"[red]{escape(str(exc))}[/]")
            raise typer.Exit(2) from exc
        console.print(f"simulated to {until}: {handled} items handled")
        return
    from api.service import Service

    service = Service.build(settings, clock=SystemClock())
    service.sync_library(force=True)
    console.print(f"worker running on {settings.db_url} ({'wecom' if service.client else 'sandbox'}); Ctrl-C to stop")
    said = None
    try:
        while True:
            handled = service.pump_once()
            if service.standing_by != said:  # one line when this worker starts or stops standing by
                said = service.standing_by
                console.print(f"[yellow]{said}[/]" if said else "pumping: the customer shards no other worker holds"
                              if service.claims is not None else "pump lease taken: this worker is pumping")
            if handled == 0:
                time.sleep(interval)
    finally:
        service.stop()


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="interface to bind")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535)] = 8000,
    worker: Annotated[bool, typer.Option(help="also run the scheduler/outbox pump in-process")] = True,
) -> None:
    """Serve the WeCom callback, web chat and operator API (uvicorn) on the configured stores."""
    import logging

    import uvicorn

    from api.app import create_app
    from api.service import Service

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = get_settings()
    service = Service.build(settings)
    if service.client is None:
        service.runtime.load_demo_shop()  # sandbox: the demo shop, unless a catalogue was imported
    app = create_app(service, run_pump=worker and settings.serve_worker)
    channel = "wecom" if service.client is not None else "sandbox"
    console.print(f"sopagent on http://{host}:{port} — channel {channel}, database {settings.db_url}")
    if app.state.generated_operator_token:
        console.print(f"operator token (set SOPAGENT_OPERATOR_TOKEN to fix it): {app.state.operator_token}")
    uvicorn.run(app, host=host, port=port, log_level="warning")


@app.command("eval")
def eval_cmd(
    paths: Annotated[list[str] | None, typer.Argument(help="case files or directories (default: the bundled "
                                                            "suite); or: import-log FILE")] = None,
    mode: Annotated[str, typer.Option(help="offline (offline brain), replay (LLM cassettes) or live")] = "offline",
    repeat: Annotated[int, typer.Option(min=1, help="runs per case; pass^k is reported")] = 1,
    report: Annotated[Path | None, typer.Option(help="write an HTML report here")] = None,
    json_out: Annotated[Path | None, typer.Option("--json", help="write a JSON report here")] = None,
    jobs: Annotated[int, typer.Option(min=1, help="parallel worker processes")] = 2,
    out: Annotated[Path | None, typer.Option(help="import-log: where to write the case skeleton")] = None,
) -> None:
    """Replay transcript cases against the agent and its SOPs; exit 1 if any case fails.

    `sopagent eval import-log LOG.json [--out case.yaml]` turns an exported conversation into a case.
    """
    from evals.case import CaseError, load_cases
    from evals.report import console_lines, write_reports
    from evals.runner import CASSETTES, aggregate, run_suite

    args = list(paths or [])
    if args[:1] == ["import-log"]:
        from evals.importer import import_log

        if len(args) != 2:
            raise typer.BadParameter("usage: sopagent eval import-log FILE [--out case.yaml]")
        try:
            text = import_log(Path(args[1]))
        except CaseError as exc:
            errors.print(f"[red]error:[/] {escape(str(exc))}")
            raise typer.Exit(2) from exc
        if out:
            out.write_text(text, encoding="utf-8")
            console.print(f"wrote {out}")
        else:
            typer.echo(text)
        return
    if mode not in ("offline", "replay", "live"):
        raise typer.BadParameter("--mode is offline, replay or live")
    started = time.perf_counter()
    try:
        cases = load_cases([Path(p) for p in args] or [CASSETTES.parent / "cases"])
    except CaseError as exc:
        errors.print(f"[red]error:[/] {escape(str(exc))}")
        raise typer.Exit(2) from exc
    results = run_suite(cases, mode, repeat, jobs)  # type: ignore[arg-type]
    seconds = time.perf_counter() - started
    for line in console_lines(results):
        console.print(line, markup=False, highlight=False, soft_wrap=True)
    metrics = aggregate(results)
    write_reports(results, metrics, seconds, mode, report, json_out)
    console.print("  ".join(f"{k}={v}" for k, v in metrics.items() if k not in ("passed", "failed")),
                  markup=False, highlight=False)
    console.print(f"wall time {seconds:.1f}s")
    console.print(f"{metrics['passed']} passed, {metrics['failed']} failed", markup=False, highlight=False)
    if metrics["failed"]:
        raise typer.Exit(1)


@sop_app.command("validate")
def validate_cmd(
    paths: Annotated[list[Path], typer.Argument(help="SOP YAML files or directories")],
    catalog: Annotated[Path | None, typer.Option(help="directory with materials/campaigns/groups/tags (default: the "
                                                      "library directory given, else the configured library)")] = None,
) -> None:
    """Validate SOP files; prints every problem as file:line and exits 1 if there is any."""
    from sop_graphs.loader import load_library
    from sop_graphs.validator import validate

    if catalog is None:  # a library directory (its sops/ beside tags.yaml…) is validated against its own catalogue
        roots = {p for p in paths if p.is_dir() and (p / "tags.yaml").is_file()}
        roots |= {p.parent for p in paths if p.is_dir() and p.name == "sops" and (p.parent / "tags.yaml").is_file()}
        catalog = roots.pop() if len(roots) == 1 else None
    library, problems = load_library(paths, catalog or get_settings().library_path)
    problems = sorted(problems + validate(library))
    for problem in problems:
        console.print(str(problem), markup=False, highlight=False, soft_wrap=True)
    if problems:
        console.print(f"[red]{len(problems)} problem(s)[/] in {len(paths)} path(s)")
        raise typer.Exit(1)
    console.print(f"[green]ok[/]: {len(library.sops)} SOP(s) valid")


@sop_app.command("graph")
def graph_cmd(
    sop_id: str,
    format: Annotated[str, typer.Option("--format", help="mermaid")] = "mermaid",
) -> None:
    """Print an SOP of the library as a graph."""
    from agent.runtime import load_valid_library
    from sop_graphs.mermaid import to_mermaid

    if format != "mermaid":
        raise typer.BadParameter("only --format mermaid is supported")
    library = load_valid_library(get_settings().library_path)
    if sop_id not in library.sops:
        console.print(f"[red]unknown SOP {sop_id!r}[/]; known: {', '.join(sorted(library.sops))}")
        raise typer.Exit(2)
    typer.echo(to_mermaid(library.sops[sop_id]), nl=False)


if __name__ == "__main__":
    app()


@kb_app.command("import")
def kb_import(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False,
                                         help=".json, .jsonl, .csv (UTF-8 or GBK/GB18030), .xlsx or .md")],
    kind: Annotated[str, typer.Option(help="products, orders, logistics, faq, policy or promotions")],
    mapping: Annotated[Path | None, typer.Option(exists=True, help="YAML field/value mapping for the file")] = None,
    sheet: Annotated[str | None, typer.Option(help=".xlsx: the worksheet to read (default: the first)")] = None,
) -> None:
    """Validate every row, then import all of them or none; re-index for retrieval.

    CSV and .xlsx rows are numbered as Excel shows them (header row 1, first data row 2)."""
    import knowledge.tables  # noqa: F401  (registers tables)
    from knowledge.db import init_db, make_engine
    from knowledge.embeddings import E5Embedder, HashingEmbedder
    from knowledge.importer import ImportFormatError, import_file
    from knowledge.retriever import SEARCH_KINDS, Retriever

    settings = get_settings()
    engine = make_engine(settings.db_url, settings.sqlite_cache_mib)
    init_db(engine)
    try:
        report = import_file(engine, file, kind, mapping, settings.shop_timezone, sheet)
    except ImportFormatError as exc:
        errors.print(f"[red]error:[/] {escape(str(exc))}")  # a sheet or file name may hold [brackets]
        raise typer.Exit(1) from exc
    if not report.ok:
        for e in report.errors:
            errors.print(f"{file}: row {e.row}: {e.field}: {e.message}")
        errors.print(f"[red]{len(report.errors)} problem(s) in {report.rows} row(s); nothing imported[/]")
        raise typer.Exit(1)
    read = (f" (sheet {escape(report.sheet)})" if report.sheet
            else f" ({report.encoding})" if report.encoding not in (None, "utf-8") else "")
    console.print(f"imported {report.written} {kind} row(s) from {file}{read}")
    if report.changes:
        import agent.tables  # noqa: F401  (registers the inbound table)
        import api.tables  # noqa: F401
        from api.order_events import emit_for_import

        queued = emit_for_import(engine, report.changes, now=datetime.now(UTC))
        console.print(f"{len(report.changes)} order(s) new or changed: {queued} order event(s) queued for the SOPs")
    if kind in SEARCH_KINDS:
        embedder = E5Embedder() if settings.embedder == "e5" else HashingEmbedder()
        counts = Retriever(engine, settings.chroma_url or settings.chroma_path, embedder).sync([kind])
        console.print(f"indexed {counts[kind]} {kind} document(s)")


def _accounts_engine() -> Any:
    import api.tables  # noqa: F401  (registers the account tables)
    from knowledge.db import init_db, make_engine

    settings = get_settings()
    engine = make_engine(settings.db_url, settings.sqlite_cache_mib)
    init_db(engine)
    return engine


@operator_app.command("add")
def operator_add(
    username: Annotated[str, typer.Argument(help="login name (letters, digits, _ . @ -)")],
    role: Annotated[str, typer.Option(help="admin, operator or advisor")] = "operator",
    display_name: Annotated[str, typer.Option(help="shown in the console and the audit log")] = "",
    wecom_userid: Annotated[str | None, typer.Option(help="their WeCom userid: tasks for their role reach them")] = None,
    password_stdin: Annotated[bool, typer.Option(help="read the password from standard input")] = False,
) -> None:
    """Create an operator account (the first admin is made this way)."""
    import re
    import sys

    from api import people

    if not re.fullmatch(r"[A-Za-z0-9_.@-]{1,64}", username):
        raise typer.BadParameter("username: 1–64 letters, digits, _ . @ -")
    password = sys.stdin.readline().rstrip("\n") if password_stdin else \
        typer.prompt("password", hide_input=True, confirmation_prompt=True)
    try:
        people.create(_accounts_engine(), username, password, role, at=datetime.now(UTC), display_name=display_name,
                      wecom_userid=wecom_userid)
    except people.AccountError as exc:
        console.print(f"[red]{exc}[/]")
        raise typer.Exit(1) from exc
    console.print(f"operator {username} ({role}) created", highlight=False)


@operator_app.command("list")
def operator_list() -> None:
    """Every operator account with its role."""
    from api import people

    for row in people.listing(_accounts_engine()):
        console.print(f"{row['username']}\t{row['role']}\t{'active' if row['active'] else 'inactive'}\t"
                      f"{row['wecom_userid'] or ''}", highlight=False, markup=False)


def _db_engine() -> Any:
    from knowledge.db import make_engine

    settings = get_settings()
    return make_engine(settings.db_url, settings.sqlite_cache_mib)


@db_app.command("upgrade")
def db_upgrade(revision: Annotated[str, typer.Argument(help="target revision")] = "head") -> None:
    """Migrate SOPAGENT_DATABASE_URL to the newest schema (services also do this when they start)."""
    from knowledge import migrate

    engine = _db_engine()
    before = migrate.current(engine)
    migrate.upgrade(engine, revision)
    console.print(f"database at {migrate.current(engine)} (was {before or 'empty'})", highlight=False)


@db_app.command("current")
def db_current() -> None:
    """The database's schema revision and the newest one this version has."""
    from knowledge import migrate

    console.print(f"database {migrate.current(_db_engine()) or 'empty'}; newest {migrate.head()}", highlight=False)


@db_app.command("revision")
def db_revision(message: Annotated[str, typer.Option("-m", "--message", help="what changed")]) -> None:
    """Developers: write a revision from the models' difference to a database at the newest revision."""
    from sqlmodel import SQLModel

    import agent.tables  # noqa: F401  (register every table on the metadata)
    import api.tables  # noqa: F401
    import knowledge.tables  # noqa: F401
    import sop_graphs.tables  # noqa: F401
    from knowledge import migrate

    migrate.revision(_db_engine(), SQLModel.metadata, message)


@wecom_app.command("sync")
def wecom_sync(
    groups: Annotated[bool, typer.Option(help="also the customer groups (groupchat/list + get)")] = True,
    restart: Annotated[bool, typer.Option(help="start over instead of resuming an unfinished sync")] = False,
    calls_per_minute: Annotated[int, typer.Option(min=1, max=10_000, help="pace of WeCom API calls")] = 5000,
) -> None:
    """Import the corp's follow users' external contacts with their tags, and its customer groups (resumable).

    Contacts become customers without firing customer_added SOPs; SOPs that want them use `on: contact_imported`."""
    import agent.tables  # noqa: F401  (registers the tables)
    import api.tables  # noqa: F401
    from agent.runtime import load_valid_library
    from api.wecom.client import WeComClient
    from api.wecom.sync import ContactSync
    from knowledge.clock import SystemClock
    from knowledge.db import init_db, make_engine

    settings = get_settings()
    if not settings.use_wecom:
        console.print("[red]error:[/] set SOPAGENT_WECOM_CORP_ID and SOPAGENT_WECOM_SECRET (or the contact secret)")
        raise typer.Exit(1)
    engine = make_engine(settings.db_url, settings.sqlite_cache_mib)
    init_db(engine)
    sync = ContactSync(WeComClient(settings), engine, load_valid_library(settings.library_path), SystemClock(),
                       calls_per_minute=calls_per_minute)
    report = sync.run(groups=groups, restart=restart)
    console.print(f"{'resumed; ' if report.resumed else ''}{report.follow_users} follow users, {report.contacts} "
                  f"contacts seen: {report.new_customers} new customers, {report.updated_customers} updated, "
                  f"{report.tags_added} tags added, {report.groups} groups, {report.pages} pages"
                  + (f", {report.queued} queued for contact_imported SOPs" if report.queued else ""), highlight=False)
    if report.stopped:
        console.print(f"[yellow]stopped:[/] {escape(report.stopped)}")
        raise typer.Exit(2)


@app.command()
def openapi(out: Annotated[Path | None, typer.Option(help="file to write (default: stdout)")] = None) -> None:
    """Print the API's OpenAPI document (the console's types are generated from it: console/openapi.json)."""
    from api.openapi import document, dumps

    text = dumps(document())
    if out is None:
        typer.echo(text, nl=False)
    else:
        out.write_text(text, encoding="utf-8")


@app.command()
def report(
    date_: Annotated[str | None, typer.Option("--date", help="shop-local day YYYY-MM-DD (default: yesterday)")] = None,
    format_: Annotated[str, typer.Option("--format", help="html, md or json")] = "html",
    out: Annotated[Path | None, typer.Option(help="file to write (default: <home>/reports/<date>.<ext>)")] = None,
) -> None:
    """Build the daily review report of a shop day from the database, store it and write it to a file."""
    from datetime import date

    import api.tables  # noqa: F401  (registers the report tables)
    from agent.runtime import load_valid_library
    from api.report import daily
    from api.report.build import yesterday
    from api.report.goals import GoalsError
    from knowledge.db import init_db, make_engine
    from knowledge.embeddings import E5Embedder, HashingEmbedder

    if format_ not in ("html", "md", "json"):
        raise typer.BadParameter("--format must be html, md or json")
    settings = get_settings()
    now = datetime.now(UTC)
    try:
        day = date.fromisoformat(date_) if date_ else yesterday(now, settings.shop_timezone)
    except ValueError as exc:
        raise typer.BadParameter(f"--date must be YYYY-MM-DD: {exc}") from exc
    engine = make_engine(settings.db_url, settings.sqlite_cache_mib)
    init_db(engine)
    library = load_valid_library(settings.library_path)
    writer = None
    if settings.brain == "llm":
        from agent.llm_brain import LLMBrain

        writer = LLMBrain(settings, catalog=library.catalog)
    embedder = E5Embedder() if settings.embedder == "e5" else HashingEmbedder()
    try:
        ctx = daily.context(settings, engine, library, embedder=embedder, writer=writer)
    except GoalsError as exc:
        console.print(f"[red]goals.yaml:[/] {exc}", markup=True, highlight=False)
        raise typer.Exit(1) from exc
    made = daily.generate(ctx, day, now)
    ext = {"html": "html", "md": "md", "json": "json"}[format_]
    path = daily.write(made, format_, out or settings.home / "reports" / f"{day.isoformat()}.{ext}")  # type: ignore[arg-type]
    console.print(f"report for {day.isoformat()} ({made.narrative.source} narrative): {path}", highlight=False)


@app.command()
def chat(
    customer: Annotated[str, typer.Option(help="customer id (created on first use)")] = "c_chat",
    name: Annotated[str, typer.Option(help="display name for a new customer")] = "访客",
) -> None:
    """Chat as a customer against the embedded setup; reads piped stdin one message per line."""
    import sys

    from api.chat import ChatSession

    session = ChatSession.open(get_settings(), customer, name)
    for block in session.start():
        console.print(block)
    interactive = sys.stdin.isatty()
    while True:
        if interactive:
            console.print("[bold]你>[/] ", end="")
        line = sys.stdin.readline()
        if not line:
            break
        if line.strip():
            console.print(session.say(line.strip()))
