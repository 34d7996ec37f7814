# Postloan image: the same image runs the web server (the default command),
# the Celery worker and Celery beat; docker-compose.yml shows all three.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONPATH=/app

WORKDIR /app

RUN groupadd --system --gid 10001 postloan \
    && useradd --system --uid 10001 --gid postloan --home-dir /app --shell /usr/sbin/nologin postloan

# WeasyPrint (meeting minutes and monthly reports as PDF) needs Pango and
# HarfBuzz from the system, and a font to draw text with.
RUN apt-get update \
    && apt-get install -y --no-install-recommends \
        libpango-1.0-0 libpangoft2-1.0-0 libharfbuzz-subset0 fonts-dejavu-core \
    && rm -rf /var/lib/apt/lists/*

COPY . .

# `pip install .` installs the dependencies declared in pyproject.toml. The
# code itself runs from /app (first on PYTHONPATH), because the settings find
# templates and static files relative to the source tree.
RUN pip install . && rm -rf build ./*.egg-info

# collectstatic has to run with the production settings so that it writes the
# manifest that their hashed, compressed static storage reads. Those settings
# refuse to load without production values, so this step gets placeholders
# that live only in this build step: it opens no database or broker
# connection, and the running containers get their real values from the
# environment.
RUN DJANGO_SETTINGS_MODULE=postloan.settings.production \
    SECRET_KEY=collectstatic-build-step-placeholder-not-a-runtime-secret \
    DEBUG=false \
    DATABASE_URL=postgres://unused@unused:5432/unused \
    CELERY_BROKER_URL=redis://unused:6379/0 \
    ALLOWED_HOSTS=unused \
    python manage.py collectstatic --no-input

RUN mkdir -p /app/media && chown postloan:postloan /app/media

USER postloan

ENV DJANGO_SETTINGS_MODULE=postloan.settings.production

EXPOSE 8000

# gunicorn reads its worker count from WEB_CONCURRENCY (default 1).
CMD ["gunicorn", "postloan.wsgi", "--bind", "0.0.0.0:8000", "--access-logfile", "-"]
