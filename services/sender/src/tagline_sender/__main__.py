"""``python -m tagline_sender`` (or ``tagline-sender``): the sender's consumers, dispatcher and HTTP API."""

from __future__ import annotations

import uvicorn

from tagline_platform.logging import configure_logging
from tagline_sender.app import create_app
from tagline_sender.settings import SenderSettings


def main() -> None:
    settings = SenderSettings()
    configure_logging("sender", settings.log_level)
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        loop="uvloop",
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=15,
    )


if __name__ == "__main__":
    main()
