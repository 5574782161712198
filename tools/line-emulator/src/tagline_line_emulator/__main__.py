"""``python -m tagline_line_emulator`` (or ``tagline-line-emulator``): the emulator as a standalone server.

Options default from the environment: ``TAGLINE_EMULATOR_HOST`` (127.0.0.1), ``TAGLINE_EMULATOR_PORT`` (8090),
``TAGLINE_EMULATOR_CHANNELS`` / ``TAGLINE_EMULATOR_CHANNELS_FILE`` (the local stack's development channel),
``TAGLINE_EMULATOR_SPEC_PATH`` (the ``messaging-api.yml`` shipped with tagline-contracts),
``TAGLINE_EMULATOR_REPLY_TOKEN_TTL_S`` (30). SIGTERM or Ctrl-C stops it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import sys
from collections.abc import Sequence
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any

import uvloop

from tagline_line_emulator.emulator import Emulator, EmulatorConfig
from tagline_line_emulator.server import serve
from tagline_line_emulator.spec import find_spec

log = logging.getLogger("tagline_line_emulator")

DEV_CHANNELS = {"1234567890": "dev-token-1234567890"}
"""The local stack's development channel (``deploy/local/dev-sender-channels.json`` gives the sender the same
token): the channels when none are configured."""


class BadChannels(ValueError):
    """The channels option is not ``{channel id: access token}`` nor a sender channels object."""


def parse_channels(text: str, source: str) -> dict[str, str]:
    """``{"<channel id>": "<access token>"}``, or the sender's channel settings
    ``{"<channel id>": {"access_token": "…", …}}`` (so both can read one file); other keys are ignored."""
    try:
        loaded: Any = json.loads(text)
    except ValueError as exc:
        raise BadChannels(f"{source} is not JSON: {exc}") from None
    if not isinstance(loaded, dict):
        raise BadChannels(f"{source} must be a JSON object {{channel id: access token}}")
    channels: dict[str, str] = {}
    for channel, value in loaded.items():
        token = value.get("access_token") if isinstance(value, dict) else value
        if not isinstance(token, str) or not token:
            raise BadChannels(
                f"{source}: channel {channel!r} has no access token (a string, or access_token)"
            )
        channels[channel] = token
    return channels


def configured_channels(inline: str | None, file: str | None) -> dict[str, str]:
    """The channels from the inline JSON and the file (the file wins for a channel in both), else
    :data:`DEV_CHANNELS`."""
    if not inline and not file:
        return dict(DEV_CHANNELS)
    channels: dict[str, str] = {}
    if inline:
        channels.update(parse_channels(inline, "--channels / TAGLINE_EMULATOR_CHANNELS"))
    if file:
        try:
            text = Path(file).read_text(encoding="utf-8")
        except OSError as exc:
            raise BadChannels(f"channels file {file}: {exc.strerror}") from None
        channels.update(parse_channels(text, f"channels file {file}"))
    return channels


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    env = os.environ
    parser = argparse.ArgumentParser(prog="tagline-line-emulator", description=__doc__)
    parser.add_argument("--host", default=env.get("TAGLINE_EMULATOR_HOST", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(env.get("TAGLINE_EMULATOR_PORT", "8090")))
    parser.add_argument(
        "--channels",
        default=env.get("TAGLINE_EMULATOR_CHANNELS") or None,
        help='JSON {"<channel id>": "<access token>"}',
    )
    parser.add_argument(
        "--channels-file",
        default=env.get("TAGLINE_EMULATOR_CHANNELS_FILE") or None,
        help="a file with the same JSON, or the sender's channel settings file",
    )
    parser.add_argument("--spec-path", default=env.get("TAGLINE_EMULATOR_SPEC_PATH") or None)
    parser.add_argument(
        "--reply-token-ttl-s", type=float, default=float(env.get("TAGLINE_EMULATOR_REPLY_TOKEN_TTL_S", "30"))
    )
    parser.add_argument("--log-level", default=env.get("TAGLINE_EMULATOR_LOG_LEVEL", "info"))
    args = parser.parse_args(argv)
    try:
        args.channel_tokens = configured_channels(args.channels, args.channels_file)
    except BadChannels as exc:
        parser.error(str(exc))
    return args


async def run(emulator: Emulator, host: str, port: int, spec: Traversable) -> None:
    """Serve until SIGTERM or SIGINT, then stop (pending fault sleeps end at once)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with serve(emulator, host, port) as running:
        channels = ", ".join(sorted(emulator.config.channels or ()))
        log.info("LINE emulator listening on %s (channels %s; spec %s)", running.url, channels, spec)
        await stop.wait()
    log.info("LINE emulator stopped")


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s")
    spec = find_spec(args.spec_path)
    try:
        config = EmulatorConfig(
            reply_token_ttl_s=args.reply_token_ttl_s, spec_path=args.spec_path, channels=args.channel_tokens
        )
    except ValueError as exc:  # e.g. two channels with one token
        sys.exit(f"tagline-line-emulator: {exc}")
    emulator = Emulator(config)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(run(emulator, args.host, args.port, spec))


if __name__ == "__main__":
    main()
