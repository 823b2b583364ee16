"""The `flowrun` command. Errors print one clear line and exit non-zero (2: your input, 1: the world)."""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence
from typing import Any

from .parser import build_parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.debug else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if not getattr(args, "handler", None):
        parser.print_help()
        return 2
    from ..flows.errors import FlowrunError, UsageError
    from .pipe import guard_stdout

    guard_stdout()  # `flowrun run ... | head -1`: the run goes on when the reader leaves
    try:
        import anyio

        return int(anyio.run(_resolve(args.handler), args))
    except FlowrunError as exc:
        from .safe import clean

        print(f"error: {clean(exc.message)}", file=sys.stderr)
        return 2 if isinstance(exc, UsageError) else 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def _resolve(handler: str) -> Any:
    """`"run"` is `flowrun.cli.commands.run`; `"module:name"` is `flowrun.cli.module.name`.
    Imported only now, so that `flowrun --help` stays instant."""
    from importlib import import_module

    module, _, name = handler.rpartition(":")
    return getattr(import_module(f"{__name__}.{module or 'commands'}"), name)


__all__ = ["main"]
