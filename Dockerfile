# monitor — synthetic monitoring daemon.
#   docker build -t monitor .
#   docker run --rm -p 9464:9464 -v "$PWD/config.yaml:/etc/monitor/config.yaml:ro" \
#       -v monitor-data:/var/lib/monitor monitor
# The config's exporter.listen must be 0.0.0.0:9464 to be reachable from outside the container,
# and storage.url should point into /var/lib/monitor (or at PostgreSQL).
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /opt/monitor
COPY pyproject.toml README.md ./
COPY monitor ./monitor
COPY config.example.yaml /etc/monitor/config.yaml
RUN pip install . \
 && useradd --system --uid 10001 --home-dir /var/lib/monitor --create-home monitor

USER monitor
WORKDIR /var/lib/monitor
EXPOSE 9464
# SIGTERM stops gracefully (running probes finish, queued results are flushed).
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=30s --timeout=3s CMD python -c "import urllib.request,sys; urllib.request.urlopen('http://127.0.0.1:9464/healthz', timeout=2)" || exit 1
ENTRYPOINT ["monitor"]
CMD ["run", "-c", "/etc/monitor/config.yaml"]
