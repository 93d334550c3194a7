# Quantum Trader: one image for every service (web, the four workers, beat, migrate).
# Which process a container runs is its command in docker-compose.yml.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    DJANGO_SETTINGS_MODULE=qtweb.settings.production

# libgomp1: the OpenMP runtime LightGBM's wheel links against (not in the slim base).
RUN apt-get update \
    && apt-get install -y --no-install-recommends libgomp1 \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /app

# torch first, from the CPU index: requirements.txt pins torch==2.13.0 and PyPI's build of it
# is the CUDA one (several GB of nvidia-* wheels). Once 2.13.0+cpu is installed, the pin in
# requirements.txt is already satisfied and pip leaves it alone.
RUN pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu
COPY requirements.txt .
RUN pip install -r requirements.txt

COPY . .

# Static files are collected into the image (served by WhiteNoise from var/static). The key is
# a build-time dummy: production settings refuse to start without one, and nothing is signed.
RUN SECRET_KEY=collectstatic-build-only-not-secret python manage.py collectstatic --noinput -v 0

RUN useradd --system --uid 10001 --home-dir /app --shell /usr/sbin/nologin qt \
    && mkdir -p /app/var/models \
    && chown -R qt:qt /app/var
USER qt

EXPOSE 8000 8001 8002 8003

# Default: the web. docker-compose.yml gives each worker and beat its own command.
CMD ["daphne", "-b", "0.0.0.0", "-p", "8000", "--proxy-headers", "qtweb.asgi:application"]
