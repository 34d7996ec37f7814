"""Settings for the test suite: PostgreSQL unless DATABASE_URL names another database."""

from __future__ import annotations

import os

os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/postloan")
os.environ.setdefault("CELERY_BROKER_URL", "")

from .base import *  # noqa: E402, F403
from .base import BASE_DIR  # noqa: E402

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
MEDIA_ROOT = BASE_DIR / "var" / "test-media"
LOGGING["root"]["level"] = "WARNING"  # noqa: F405

# A test database per process, so several test runs on one machine (a
# developer's and CI's, or parallel helpers) never drop each other's database.
DATABASES["default"].setdefault("TEST", {})["NAME"] = os.environ.get(  # noqa: F405
    "POSTLOAN_TEST_DATABASE", f"test_postloan_{os.getpid()}"
)
