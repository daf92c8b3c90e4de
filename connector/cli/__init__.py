"""`cbembed` command line: demo, load, run, search, status, deadletter, index, serve-embed.

Every command takes `--config FILE` (else `$CBEMBED_CONFIG`, else `./cbembed.toml`). Errors
print one clear message (no traceback) and exit with 2 for bad configuration or usage, 1 for
anything else that went wrong.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

from connector.errors import CbembedError, ConfigError


def build_parser() -> argparse.ArgumentParser:
    from connector.cli import demo, index, load, run, search, serve_embed, status

    parser = argparse.ArgumentParser(
        prog="cbembed", description="Automatic embeddings for Couchbase (and an embedded store)."
    )
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in (demo, load, run, search, status, index, serve_embed):
        module.register(sub)
    return parser


def add_config_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", metavar="FILE", help="TOML configuration (default ./cbembed.toml)")


def main(argv: Sequence[str] | None = None) -> int:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")  # no "Loading weights" bars
    parser = build_parser()
    args = parser.parse_args(argv)
    level = logging.WARNING - 10 * min(args.verbose, 2)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("apscheduler").setLevel(max(level, logging.WARNING))
    for noisy in ("transformers", "sentence_transformers", "httpx", "huggingface_hub"):
        logging.getLogger(noisy).setLevel(max(level, logging.WARNING))
    try:
        return int(args.handler(args) or 0)
    except ConfigError as e:
        print(f"cbembed: {e}", file=sys.stderr)
        return 2
    except CbembedError as e:
        print(f"cbembed: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
