"""``python -m tagline_line_emulator`` (or ``tagline-line-emulator``): the emulator as a standalone server.

Options default from the environment: ``TAGLINE_EMULATOR_HOST`` (127.0.0.1), ``TAGLINE_EMULATOR_PORT`` (8090),
``TAGLINE_EMULATOR_SPEC_PATH`` (the ``messaging-api.yml`` shipped with tagline-contracts),
``TAGLINE_EMULATOR_REPLY_TOKEN_TTL_S`` (30). SIGTERM or Ctrl-C stops it.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
from collections.abc import Sequence
from importlib.resources.abc import Traversable

import uvloop

from tagline_line_emulator.emulator import Emulator, EmulatorConfig
from tagline_line_emulator.server import serve
from tagline_line_emulator.spec import find_spec

log = logging.getLogger("tagline_line_emulator")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    env = os.environ
    parser = argparse.ArgumentParser(prog="tagline-line-emulator", description=__doc__)
    parser.add_argument("--host", default=env.get("TAGLINE_EMULATOR_HOST", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(env.get("TAGLINE_EMULATOR_PORT", "8090")))
    parser.add_argument("--spec-path", default=env.get("TAGLINE_EMULATOR_SPEC_PATH") or None)
    parser.add_argument(
        "--reply-token-ttl-s", type=float, default=float(env.get("TAGLINE_EMULATOR_REPLY_TOKEN_TTL_S", "30"))
    )
    parser.add_argument("--log-level", default=env.get("TAGLINE_EMULATOR_LOG_LEVEL", "info"))
    return parser.parse_args(argv)


async def run(emulator: Emulator, host: str, port: int, spec: Traversable) -> None:
    """Serve until SIGTERM or SIGINT, then stop (pending fault sleeps end at once)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with serve(emulator, host, port) as running:
        log.info("LINE emulator listening on %s (spec %s)", running.url, spec)
        await stop.wait()
    log.info("LINE emulator stopped")


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s")
    spec = find_spec(args.spec_path)
    emulator = Emulator(EmulatorConfig(reply_token_ttl_s=args.reply_token_ttl_s, spec_path=args.spec_path))
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(run(emulator, args.host, args.port, spec))


if __name__ == "__main__":
    main()
