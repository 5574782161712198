"""``python -m tagline_tagger`` (or ``tagline-tagger``): the member pipeline, jobs and HTTP API."""

from __future__ import annotations

import uvicorn

from tagline_platform.logging import configure_logging
from tagline_platform.shutdown import exit_zero_on_sigterm
from tagline_tagger.app import create_app
from tagline_tagger.settings import TaggerSettings


def main() -> None:
    settings = TaggerSettings()
    configure_logging("tagger", settings.log_level)
    exit_zero_on_sigterm()
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
