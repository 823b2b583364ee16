"""The `flowrun` command. Errors print one clear line and exit non-zero (2: your input, 1: the world)."""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence

from .parser import build_parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.debug else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if not getattr(args, "handler", None):
        parser.print_help()
        return 2
    from ..flows.errors import FlowrunError, UsageError

    try:
        import anyio

        from . import commands  # imported here so that `flowrun --help` stays instant

        return int(anyio.run(getattr(commands, args.handler), args))
    except FlowrunError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 2 if isinstance(exc, UsageError) else 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


__all__ = ["main"]
