"""The REST API service (``fundtrail serve``): FastAPI on uvicorn over the library and the platform core.
See docs/api.md; :func:`fundtrail.api.app.create_app` builds the application."""

from fundtrail.api.app import create_app
from fundtrail.api.config import ServiceSettings

__all__ = ["ServiceSettings", "create_app"]
