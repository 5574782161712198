"""``python -m tagline_ingest`` (or ``tagline-ingest``): serve the webhook endpoint with uvicorn."""

from __future__ import annotations

import uvicorn

from tagline_ingest.app import create_app
from tagline_ingest.settings import IngestSettings
from tagline_platform.logging import configure_logging
from tagline_platform.shutdown import exit_zero_on_sigterm


def main() -> None:
    settings = IngestSettings()
    configure_logging("ingest", settings.log_level)
    exit_zero_on_sigterm()
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        loop="uvloop",
        http="httptools",
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=10,
    )


if __name__ == "__main__":
    main()
