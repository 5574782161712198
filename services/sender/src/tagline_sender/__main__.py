"""``python -m tagline_sender`` (or ``tagline-sender``): the sender's consumers, dispatcher and HTTP API."""

from __future__ import annotations

import uvicorn

from tagline_platform.logging import configure_logging
from tagline_platform.shutdown import exit_zero_on_sigterm
from tagline_platform.tasks import offset_clock, utc_now
from tagline_sender.app import create_app
from tagline_sender.settings import SenderSettings


def main() -> None:
    settings = SenderSettings()
    configure_logging("sender", settings.log_level)
    exit_zero_on_sigterm()
    uvicorn.run(
        create_app(
            settings,
            clock=offset_clock(settings.clock_offset_file) if settings.clock_offset_file else utc_now,
        ),
        host=settings.host,
        port=settings.port,
        loop="uvloop",
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=15,
    )


if __name__ == "__main__":
    main()
