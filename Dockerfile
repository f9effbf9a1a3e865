# The monitor (proxy + workers), for docker-compose.yml or any container platform.
#   docker build -t gemma-monitor .
# The image holds the installed wheel, not the source tree: the migrations and the shipped
# policies travel inside the package (monitor/migrations, monitor/policies), as with pip.
FROM python:3.11-slim AS wheel
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY monitor monitor
COPY migrations migrations
COPY policies policies
COPY dashboard dashboard
RUN pip wheel --no-deps --wheel-dir /wheels .

FROM python:3.11-slim

ARG EXTRAS=postgres
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# The working directory is where an optional monitor.yaml is read from; it holds no code.
WORKDIR /app
COPY --from=wheel /wheels /wheels
RUN pip install "$(echo /wheels/gemma_monitor-*.whl)[${EXTRAS}]" \
    && rm -rf /wheels \
    && useradd --system --uid 10001 --home-dir /app monitor \
    && mkdir -p /var/lib/gemma-monitor/spool \
    && chown -R monitor /var/lib/gemma-monitor \
    && chmod 700 /var/lib/gemma-monitor/spool

USER monitor
ENV MONITOR_HOST=0.0.0.0 \
    MONITOR_PORT=8000 \
    MONITOR_SPOOL_DIR=/var/lib/gemma-monitor/spool
VOLUME ["/var/lib/gemma-monitor"]
EXPOSE 8000

HEALTHCHECK --interval=15s --timeout=3s --start-period=20s --retries=3 \
    CMD python -c "import os, urllib.request; urllib.request.urlopen(f'http://127.0.0.1:{os.environ.get(\"MONITOR_PORT\", \"8000\")}/health', timeout=2)"

CMD ["sh", "-c", "gemma-monitor db upgrade && exec gemma-monitor serve --host 0.0.0.0"]
