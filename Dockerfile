# syntax=docker/dockerfile:1

# Build: resolve the locked dependencies into /app/.venv, then add the
# service as a wheel; nothing of this stage but the venv reaches the image.
# uv trusts the system's certificates as pip does: behind a TLS-intercepting
# proxy the builder mounts its own trust store over them for the build steps
# (deploy/image/build.sh), which this stage alone sees.
FROM python:3.13-slim-trixie AS build
ENV UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    UV_SYSTEM_CERTS=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /app
RUN pip install --no-cache-dir "uv==0.13.9"
COPY pyproject.toml uv.lock README.md ./
RUN uv sync --frozen --no-dev --no-install-project
COPY service ./service
RUN uv build --wheel --out-dir /dist \
    && uv pip install --python /app/.venv/bin/python --no-deps /dist/*.whl

# Runtime: the venv, the migrations and the server settings; no compilers,
# no uv, no tests. A fixed uid so volume permissions are predictable.
FROM python:3.13-slim-trixie AS runtime
RUN groupadd --system --gid 10001 app \
    && useradd --system --uid 10001 --gid app --no-create-home --home-dir /app app
WORKDIR /app
COPY --from=build /app/.venv /app/.venv
COPY migrations ./migrations
COPY pyproject.toml hypercorn.toml deploy/docker-entrypoint.py ./
ENV PATH="/app/.venv/bin:$PATH" \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    APP_ENV=production
USER 10001:10001
# The Flask image's port; PORT moves it (docker-entrypoint.py).
EXPOSE 5000
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import os, sys, urllib.request; sys.exit(urllib.request.urlopen(f'http://127.0.0.1:{os.environ.get(\"PORT\") or 5000}/healthz', timeout=2).status != 200)"]
# Secrets from *_FILE, DATABASE_PASSWORD into the URL, the bind from PORT;
# then it execs the command, which stays the container's main process.
ENTRYPOINT ["python", "/app/docker-entrypoint.py"]
# One Hypercorn worker per container (several workers drop in-flight requests
# on SIGTERM); scale with replicas.
CMD ["hypercorn", "-c", "hypercorn.toml", "service.asgi:app"]
