"""`cbembed run [--until-idle] [--group G --member I --of N]`: the long-running connector."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from typing import Any

from tqdm import tqdm

from connector.config import Settings, load_settings
from connector.service import Connector, RunSummary


def register(sub: Any) -> None:
    from connector.cli import add_config_option

    p = sub.add_parser("run", help="run the connector: embed every change of the pipelines")
    add_config_option(p)
    p.add_argument("--until-idle", action="store_true",
                   help="exit once every existing change is embedded")
    p.add_argument("--group", help="connector group name (checkpoints are per group)")
    p.add_argument("--member", type=int, help="this worker's index in the group, from 0")
    p.add_argument("--of", dest="members", type=int, help="number of workers in the group")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(handler=handle)


def apply_group_options(settings: Settings, args: argparse.Namespace) -> Settings:
    overrides = {k: v for k, v in (("group", args.group), ("member", args.member),
                                   ("members", args.members)) if v is not None}
    if not overrides:
        return settings
    return load_settings(args.config, connector={**settings.connector.model_dump(), **overrides})


async def run_connector(
    settings: Settings, *, until_idle: bool, progress: bool
) -> RunSummary:
    connector = Connector(settings)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, connector.stop)
    bar: tqdm[Any] | None = None

    def show(c: Connector) -> None:
        nonlocal bar
        if bar is None:
            bar = tqdm(total=c.initial_lag or None, desc="embedding", unit="change")
        bar.n = c.finished
        bar.set_postfix({w.name: w.stats.embedded for w in c.workers}, refresh=False)
        bar.refresh()

    try:
        summary = await connector.run(until_idle=until_idle, on_progress=show if progress else None)
    finally:
        if bar is not None:
            bar.close()
        await connector.close()
    return summary


def handle(args: argparse.Namespace) -> int:
    settings = apply_group_options(load_settings(args.config), args)
    summary = asyncio.run(run_connector(
        settings, until_idle=args.until_idle, progress=not args.quiet and sys.stderr.isatty()
    ))
    for name, stats in summary.this_run.items():
        print(f"{name} (this run): " + ", ".join(f"{k}={v}" for k, v in stats.items()))
    return 0
