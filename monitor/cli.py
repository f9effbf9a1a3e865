"""`gemma-monitor`: serve, db upgrade/current, dashboard, report, policy check, eval-guard, demo.

The CLI builds `Settings` once and hands them on; errors the operator can fix (bad settings, an
un-migrated database) end the process with a message and exit code 2, never a traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

from monitor.config import Settings, SettingsError
from monitor.evaluation import guard_eval

EXIT_USAGE = 2


def _settings(args: argparse.Namespace, **overrides: Any) -> Settings:
    return Settings.load(args.config, **overrides)


def cmd_serve(args: argparse.Namespace) -> int:
    settings = _settings(
        args,
        host=args.host,
        port=args.port,
        backend_url=args.backend,
        database_url=args.database_url,
        policies=args.policies,
        auto_migrate=True if args.migrate else None,
        workers=args.workers,
    )
    from monitor.serving import serve

    return serve(settings)


def cmd_db_upgrade(args: argparse.Namespace) -> int:
    from monitor.store.engine import redact_url
    from monitor.store.migrate import current_revision, upgrade

    settings = _settings(args, database_url=args.database_url)
    upgrade(settings.database_url)
    print(
        f"{redact_url(settings.database_url)} is at revision {current_revision(settings.database_url)}"
    )
    return 0


def cmd_db_current(args: argparse.Namespace) -> int:
    from monitor.store.engine import redact_url
    from monitor.store.migrate import current_revision, head_revision

    settings = _settings(args, database_url=args.database_url)
    current = current_revision(settings.database_url)
    head = head_revision()
    print(f"{redact_url(settings.database_url)}: at {current or 'nothing'}, head is {head}")
    return 0 if current == head else 1


def cmd_demo(args: argparse.Namespace) -> int:
    from monitor.backends.local import LocalGemmaServer

    with LocalGemmaServer(port=args.backend_port) as backend:
        print(f"Gemma 3 270M (llama.cpp) serving at {backend.url}", file=sys.stderr)
        settings = _settings(
            args,
            host=args.host,
            port=args.port,
            backend_url=backend.url,
            auto_migrate=True,
        )
        print(
            f"Gemma Monitor proxy at http://{settings.host}:{settings.port} "
            f"(OpenAI: /v1/chat/completions, Ollama: /api/chat; metrics: /metrics)",
            file=sys.stderr,
        )
        from monitor.serving import serve

        return serve(settings)


def cmd_report(args: argparse.Namespace) -> int:
    from datetime import UTC, datetime, timedelta

    from monitor.config_types import parse_duration
    from monitor.reports.report import build_report, write_report
    from monitor.store.engine import make_engine
    from monitor.store.migrate import NotMigratedError, check_migrated

    settings = _settings(args, database_url=args.database_url)
    try:
        window = parse_duration(args.window)
        if window <= 0:
            raise ValueError("a report window is longer than zero")
    except ValueError as exc:
        print(f"gemma-monitor: --window: {exc}", file=sys.stderr)
        return EXIT_USAGE
    engine = make_engine(settings.database_url)
    try:
        check_migrated(engine)
        until = datetime.now(UTC)
        report = build_report(engine, until - timedelta(seconds=window), until)
        # JSON streams its per-request lists from the database while it writes
        if args.out:
            with open(args.out, "w", encoding="utf-8") as out:
                write_report(report, args.format, out, engine)
        else:
            write_report(report, args.format, sys.stdout, engine)
    except NotMigratedError as exc:
        print(f"gemma-monitor: {exc}", file=sys.stderr)
        return EXIT_USAGE
    finally:
        engine.dispose()
    return 0


def cmd_dashboard(args: argparse.Namespace) -> int:
    """`streamlit run` on the installed dashboard script, with this interpreter, headless."""
    import getpass
    import importlib.util
    import os

    from monitor.passwords import hash_password

    if args.hash_password:
        password = (
            getpass.getpass("Dashboard password: ")
            if sys.stdin.isatty()
            else sys.stdin.readline().rstrip("\n")
        )
        if not password:
            print("gemma-monitor: an empty password", file=sys.stderr)
            return EXIT_USAGE
        print(hash_password(password))
        return 0
    settings = _settings(args, database_url=args.database_url)
    if args.no_auth:
        host = "127.0.0.1"  # no login: this machine only, whatever --host says
    elif settings.dashboard_password is None and settings.dashboard.password_hash is None:
        print(
            "gemma-monitor: the dashboard needs a password: set MONITOR_DASHBOARD_PASSWORD (or "
            "MONITOR_DASHBOARD__PASSWORD_HASH, from `gemma-monitor dashboard --hash-password`), "
            "or pass --no-auth to serve it without one on 127.0.0.1 only",
            file=sys.stderr,
        )
        return EXIT_USAGE
    else:
        host = args.host
    spec = importlib.util.find_spec("streamlit")
    entry = importlib.util.find_spec("monitor.dashboard.app")
    if spec is None or entry is None or entry.origin is None:
        print(
            "gemma-monitor: the dashboard needs the `dashboard` extra: "
            "pip install 'gemma-monitor[dashboard]'",
            file=sys.stderr,
        )
        return EXIT_USAGE
    command = [
        sys.executable, "-m", "streamlit", "run", entry.origin,
        "--server.address", host, "--server.port", str(args.port),
        "--server.headless", "true", "--browser.gatherUsageStats", "false",
        "--server.fileWatcherType", "none", "--global.developmentMode", "false",
        "--client.toolbarMode", "viewer",  # no "Deploy" button: this is an operator's tool
        "--",
    ]  # fmt: skip
    if args.config:
        command += ["--config", args.config]
    if args.no_auth:
        command.append("--no-auth")
    env = dict(os.environ)
    if args.database_url:
        env["MONITOR_DATABASE_URL"] = args.database_url
    print(f"Gemma Monitor dashboard at http://{host}:{args.port}", file=sys.stderr)
    sys.stdout.flush()
    os.execve(sys.executable, command, env)  # streamlit owns the process from here
    return 0  # not reached


def cmd_policy_check(args: argparse.Namespace) -> int:
    """Validate policies without loading their models (that happens when the proxy starts)."""
    from monitor.guard.loader import PolicyError
    from monitor.proxy.guarding import resolve_policy

    status = 0
    for name in args.policies:
        try:
            policy = resolve_policy(name)
        except PolicyError as exc:
            print(f"{name}: invalid: {exc}", file=sys.stderr)
            status = EXIT_USAGE
            continue
        if policy is None:
            print(f"{name}: the guard is off")
            continue
        models = [
            f"{stage}: {check.model}" + (f" at {check.endpoint}" if check.endpoint else "")
            for stage, check in policy.model_checks()
        ]
        note = f"ShieldGemma checks ({'; '.join(models)})" if models else "rules only"
        print(
            f"{name}: valid policy '{policy.name}': {len(policy.input.checks)} input and "
            f"{len(policy.output.checks)} output checks; {note}"
        )
    return status


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gemma-monitor", description=__doc__)
    parser.add_argument("--config", help="settings file (default: ./monitor.yaml if present)")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the proxy and its workers")
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.add_argument("--backend", help="upstream Gemma server URL (MONITOR_BACKEND_URL)")
    serve.add_argument("--database-url", help="SQLAlchemy URL (MONITOR_DATABASE_URL)")
    serve.add_argument(
        "--policies", help="guard policy: a YAML file, a shipped name, or off (MONITOR_POLICIES)"
    )
    serve.add_argument("--migrate", action="store_true", help="upgrade the database first")
    serve.add_argument(
        "--workers", type=int, help="server processes behind the port (MONITOR_WORKERS)"
    )
    serve.set_defaults(func=cmd_serve)

    db = sub.add_parser("db", help="database schema")
    db_sub = db.add_subparsers(dest="db_command", required=True)
    up = db_sub.add_parser("upgrade", help="migrate the configured database to the newest schema")
    up.add_argument("--database-url")
    up.set_defaults(func=cmd_db_upgrade)
    current = db_sub.add_parser("current", help="show the schema revision (exit 1 if behind)")
    current.add_argument("--database-url")
    current.set_defaults(func=cmd_db_current)

    evaluate = sub.add_parser(
        "eval-guard",
        help="precision/recall/F1/over-block of a guard policy on a labelled CSV or JSONL",
        description=(guard_eval.__doc__ or "").splitlines()[0],
    )
    guard_eval.add_arguments(evaluate)
    evaluate.set_defaults(func=guard_eval.run)

    policy = sub.add_parser("policy", help="guard policies")
    policy_sub = policy.add_subparsers(dest="policy_command", required=True)
    check = policy_sub.add_parser("check", help="validate policy files (or shipped names)")
    check.add_argument("policies", nargs="+")
    check.set_defaults(func=cmd_policy_check)

    report = sub.add_parser("report", help="a health report of a window, from the database")
    report.add_argument("--window", default="24h", help="e.g. 1h, 24h, 7d (default 24h)")
    report.add_argument("--format", choices=["json", "md", "html"], default="md")
    report.add_argument("--out", help="write to this file instead of standard output")
    report.add_argument("--database-url")
    report.set_defaults(func=cmd_report)

    dashboard = sub.add_parser("dashboard", help="the Streamlit dashboard (the dashboard extra)")
    dashboard.add_argument("--host", default="0.0.0.0", help="address to listen on (default all)")
    dashboard.add_argument("--port", type=int, default=8501)
    dashboard.add_argument("--database-url")
    dashboard.add_argument(
        "--no-auth", action="store_true", help="no login; listens on 127.0.0.1 only"
    )
    dashboard.add_argument(
        "--hash-password", action="store_true",
        help="print a hash of a password (asked for, or read from standard input) for "
        "MONITOR_DASHBOARD__PASSWORD_HASH, and exit",
    )  # fmt: skip
    dashboard.set_defaults(func=cmd_dashboard)

    demo = sub.add_parser("demo", help="a local Gemma 3 270M backend and the proxy on SQLite")
    demo.add_argument("--host", default="127.0.0.1")
    demo.add_argument("--port", type=int, default=8000)
    demo.add_argument("--backend-port", type=int, default=8080)
    demo.set_defaults(func=cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except SettingsError as exc:
        print(f"gemma-monitor: {exc}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
