"""``agentproto-agent``: the command line of the agent (options, logging, signals)."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from collections.abc import Sequence
from types import FrameType as PyFrame

from ..errors import AgentProtoError
from .command import DEFAULT_GRACE
from .server import DEFAULT_IDLE_TIMEOUT, DEFAULT_MAX_CONNECTIONS, serve_listener, serve_stdio

__all__ = ["main"]

_agent_log = logging.getLogger("agentproto.agent")


def _on_signal(signo: int, _frame: PyFrame | None) -> None:
    raise SystemExit(128 + signo)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the agent (the ``agentproto-agent`` console script); returns the process status."""
    parser = argparse.ArgumentParser(
        prog="agentproto-agent",
        description="Run commands for an agentproto runner over stdin/stdout or a socket.",
    )
    parser.add_argument(
        "--listen",
        metavar="ADDR",
        help="serve connections on unix:/path (mode 0600) or tcp:[HOST:]PORT "
        "(default host 127.0.0.1) instead of stdin/stdout",
    )
    parser.add_argument(
        "--root",
        metavar="DIR",
        help="confine file ops to this directory (not commands nor PATH queries)",
    )
    parser.add_argument(
        "--allow-uid",
        metavar="UID",
        type=int,
        action="append",
        help="with --listen: also admit local peers of this uid (repeatable); the agent's own "
        "uid and root are always admitted",
    )
    parser.add_argument(
        "--token-file",
        metavar="PATH",
        help="with --listen: admit any peer presenting the token in PATH (mode 0600; "
        "default: $AGENTPROTO_TOKEN)",
    )
    parser.add_argument(
        "--max-connections",
        metavar="N",
        type=int,
        default=DEFAULT_MAX_CONNECTIONS,
        help=f"with --listen: serve at most N connections at once, refuse more "
        f"(default {DEFAULT_MAX_CONNECTIONS})",
    )
    parser.add_argument(
        "--idle-timeout",
        metavar="SECONDS",
        type=float,
        default=DEFAULT_IDLE_TIMEOUT,
        help=f"with --listen: close a connection that sends nothing for SECONDS before its "
        f"command starts, or stops inside a frame that long (default {DEFAULT_IDLE_TIMEOUT:g})",
    )
    parser.add_argument(
        "--insecure-allow-any-peer",
        action="store_true",
        help="with --listen: admit every peer that can connect, unchecked (dangerous)",
    )
    parser.add_argument(
        "--log-level",
        default="info",
        choices=["debug", "info", "warning", "error"],
        help="level of the agent's logs (stderr and FrameLog); default info",
    )
    parser.add_argument(
        "--grace",
        type=float,
        default=DEFAULT_GRACE,
        help="seconds between SIGTERM and SIGKILL when the runner disconnects",
    )
    args = parser.parse_args(argv)
    if args.max_connections < 1:
        parser.error(f"--max-connections {args.max_connections}: must be at least 1")
    if not args.idle_timeout > 0:
        parser.error(f"--idle-timeout {args.idle_timeout:g}: must be a positive number of seconds")
    args.log_level = getattr(logging, args.log_level.upper())
    if args.root is not None:
        if not os.path.isdir(args.root):
            parser.error(f"--root {args.root}: not a directory")
        args.root = os.path.abspath(args.root)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        logging.Formatter(f"agentproto-agent[{os.getpid()}]: %(levelname)s %(message)s")
    )
    _agent_log.addHandler(handler)
    _agent_log.setLevel(args.log_level)
    _agent_log.propagate = False
    for signo in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signo, _on_signal)
    try:
        if args.listen:
            return serve_listener(args)
        return serve_stdio(args)
    except (KeyboardInterrupt, SystemExit):
        return 1
    except AgentProtoError as exc:
        print(f"agentproto-agent: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
