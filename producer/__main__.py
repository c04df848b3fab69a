"""``python -m producer``: serve the app with uvicorn (uvloop + httptools)."""

from __future__ import annotations

import uvicorn

from producer.config import get_settings
from producer.main import create_app


def main() -> None:
    settings = get_settings()
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        loop="uvloop",
        http="httptools",
        timeout_graceful_shutdown=20,
    )


if __name__ == "__main__":
    main()
