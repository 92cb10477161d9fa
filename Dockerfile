# signcsr-bot: `docker build -t signcsr-bot .`, then run with the environment described in
# README.md (SLACK_*, PAM360_*, SIGNCSR_*) and a volume on /data for the request store.

# Build stage: install the package and its dependencies into a virtualenv that the runtime
# stage copies as is, so pip and the build's leftovers stay out of the final image.
FROM python:3.11-slim AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_INPUT=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY bot/ bot/
RUN python -m venv /opt/venv \
    && /opt/venv/bin/pip install --no-cache-dir .

# Runtime stage
FROM python:3.11-slim
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PATH=/opt/venv/bin:$PATH \
    SIGNCSR_DATABASE=sqlite:////data/signcsr.db

# A fixed numeric user, so that orchestrators can check it is not root (runAsNonRoot) and
# volume ownership is the same on every host.
RUN groupadd --system --gid 10001 signcsr \
    && useradd --system --uid 10001 --gid 10001 --home-dir /app --no-create-home \
        --shell /usr/sbin/nologin signcsr \
    && mkdir -p /app /data \
    && chown 10001:10001 /app /data

COPY --from=build /opt/venv /opt/venv
WORKDIR /app
USER 10001:10001

# The SQLite store lives here; a new named volume starts out owned by the user above.
VOLUME ["/data"]

# HTTP mode serves POST /slack/events and GET /healthz here; Socket Mode serves /healthz alone.
EXPOSE 3000

# Healthy only when /healthz answers 200 (the store answers and, in Socket Mode, the socket
# is connected). Proxies are bypassed: HTTP_PROXY set for PAM360 must not catch 127.0.0.1.
# Runs `python -c` because slim images have no curl. Change 3000 here if you pass --port.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request as u; sys.exit(u.build_opener(u.ProxyHandler({})).open('http://127.0.0.1:3000/healthz', timeout=4).status != 200)"]

CMD ["signcsr-bot", "serve"]
