"""`cbembed serve-embed [--host H] [--port P] [--pipeline NAME ...] [--token T]`: an HTTP
endpoint that embeds query text with a pipeline's encoder (for SQL++ CURL(); see
docs/couchbase-search.md). Runs until interrupted."""

from __future__ import annotations

import argparse
import os
from typing import Any

from connector.config import load_settings


def register(sub: Any) -> None:
    from connector.cli import add_config_option

    p = sub.add_parser("serve-embed", help="HTTP endpoint: POST /embed -> a query vector")
    add_config_option(p)
    p.add_argument("--host", default="127.0.0.1", help="address to bind (127.0.0.1)")
    p.add_argument("--port", type=int, default=8765, help="port (8765)")
    p.add_argument("--pipeline", action="append", dest="pipelines", metavar="NAME",
                   help="serve only this pipeline (repeatable; default: all)")
    p.add_argument("--token", default=os.environ.get("CBEMBED_EMBED_TOKEN"),
                   help="require 'Authorization: Bearer TOKEN' (default $CBEMBED_EMBED_TOKEN)")
    p.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    from connector.embed_server import EmbedService, make_server

    service = EmbedService(load_settings(args.config), args.pipelines, args.token)
    service.load()
    server = make_server(service, args.host, args.port)
    print(f"embedding on http://{args.host}:{server.server_port}/embed for "
          f"{', '.join(service.pipelines)}" + (" (token required)" if service.token else ""),
          flush=True)
    try:
        server.serve_forever()
    finally:
        server.server_close()
    return 0
