"""Production settings: the development defaults are refused at start-up."""

from __future__ import annotations

from django.core.exceptions import ImproperlyConfigured

from .base import *  # noqa: F403
from .base import DATABASES, DEBUG, DEVELOPMENT_SECRET_KEY, SECRET_KEY, env


def _require_production_values() -> None:
    problems = []
    if SECRET_KEY == DEVELOPMENT_SECRET_KEY or len(SECRET_KEY) < 40:
        problems.append("SECRET_KEY must be set to a random value of at least 40 characters")
    if DEBUG:
        problems.append("DEBUG must be false")
    if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
        problems.append("DATABASE_URL must point to PostgreSQL")
    if not env.str("CELERY_BROKER_URL", default=""):
        problems.append("CELERY_BROKER_URL must be set")
    if not env.list("ALLOWED_HOSTS", default=[]):
        problems.append("ALLOWED_HOSTS must be set")
    if problems:
        raise ImproperlyConfigured("Refusing to start: " + "; ".join(problems) + ".")


_require_production_values()

STORAGES["staticfiles"]["BACKEND"] = (  # noqa: F405
    "whitenoise.storage.CompressedManifestStaticFilesStorage"
)
SESSION_COOKIE_SECURE = env.bool("SESSION_COOKIE_SECURE", default=True)
CSRF_COOKIE_SECURE = env.bool("CSRF_COOKIE_SECURE", default=True)
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_CONTENT_TYPE_NOSNIFF = True
