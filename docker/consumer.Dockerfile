# The consumer image. Build context: the repository root
#   docker build -f docker/consumer.Dockerfile -t kinesis-ingest-consumer .
# Dependencies come from uv.lock in their own layer, so a code change rebuilds only the last one.

FROM python:3.11.7-slim-bookworm AS builder
COPY --from=ghcr.io/astral-sh/uv:0.13.9 /uv /usr/local/bin/uv
ENV UV_COMPILE_BYTECODE=1 UV_LINK_MODE=copy UV_PYTHON_DOWNLOADS=never \
    UV_PROJECT_ENVIRONMENT=/opt/venv
WORKDIR /app
COPY pyproject.toml uv.lock ./
RUN uv sync --frozen --no-dev --no-install-project --extra consumer
COPY common/ common/
COPY consumer/ consumer/

FROM python:3.11.7-slim-bookworm
# The MultiLangDaemon is Java; the KCL jars came with amazon-kclpy into the venv.
# No setuid/setgid programs: nothing in the container can gain privileges (ECS on Fargate
# has no no-new-privileges option; infra/components/service.py).
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends openjdk-17-jre-headless \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --gid 10001 app \
    && useradd --uid 10001 --gid app --no-create-home --shell /usr/sbin/nologin app \
    && find / -xdev -type f -perm /6000 -exec chmod a-s {} +
COPY --from=builder /opt/venv /opt/venv
COPY --from=builder /app /app
WORKDIR /app
ENV PATH=/opt/venv/bin:$PATH PYTHONPATH=/app PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 \
    CONSUMER_PROPERTIES_PATH=/tmp/consumer.properties
# the task's root filesystem is read-only: /tmp is its one writable volume, and declaring it
# here makes ECS seed that volume with this world-writable, sticky /tmp (infra: service.py)
VOLUME ["/tmp"]
USER 10001
STOPSIGNAL SIGTERM
# unhealthy when a record processor has been busy with one batch far past its write deadline
HEALTHCHECK --interval=30s --timeout=10s --start-period=120s --retries=3 \
    CMD ["python", "-m", "consumer.health"]
# `python -m consumer` renders the KCL properties, then execs the JVM: the JVM *is* PID 1, so
# SIGTERM reaches the daemon, whose graceful shutdown writes the final checkpoints.
ENTRYPOINT ["python", "-m", "consumer"]
