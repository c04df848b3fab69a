# The scaler image. Build context: the repository root
#   docker build -f docker/scaler.Dockerfile -t kinesis-ingest-scaler .
# Dependencies come from uv.lock in their own layer, so a code change rebuilds only the last one.

FROM python:3.11.7-slim-bookworm AS builder
COPY --from=ghcr.io/astral-sh/uv:0.13.9 /uv /usr/local/bin/uv
ENV UV_COMPILE_BYTECODE=1 UV_LINK_MODE=copy UV_PYTHON_DOWNLOADS=never \
    UV_PROJECT_ENVIRONMENT=/opt/venv
WORKDIR /app
COPY pyproject.toml uv.lock ./
RUN uv sync --frozen --no-dev --no-install-project
COPY common/ common/
COPY scaler/ scaler/

FROM python:3.11.7-slim-bookworm
# no setuid/setgid programs: nothing in the container can gain privileges (ECS on Fargate
# has no no-new-privileges option; infra/components/service.py)
RUN groupadd --gid 10001 app \
    && useradd --uid 10001 --gid app --no-create-home --shell /usr/sbin/nologin app \
    && find / -xdev -type f -perm /6000 -exec chmod a-s {} +
COPY --from=builder /opt/venv /opt/venv
COPY --from=builder /app /app
WORKDIR /app
ENV PATH=/opt/venv/bin:$PATH PYTHONPATH=/app PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 \
    SCALER_METRICS_SOURCE=cloudwatch
# the task's root filesystem is read-only: /tmp is its one writable volume, and declaring it
# here makes ECS seed that volume with this world-writable, sticky /tmp (infra: service.py)
VOLUME ["/tmp"]
USER 10001
STOPSIGNAL SIGTERM
# unhealthy when the check loop has not come round for its interval + wait for ACTIVE + 2 min
HEALTHCHECK --interval=60s --timeout=10s --start-period=60s --retries=3 \
    CMD ["python", "-m", "scaler.health"]
# SIGTERM ends the loop between checks (an operation in progress finishes first).
ENTRYPOINT ["python", "-m", "scaler"]
