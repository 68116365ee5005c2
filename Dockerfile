# monitor — synthetic monitoring daemon.
#   docker build -t monitor .
#   docker run --rm -p 9464:9464 -v "$PWD/config.yaml:/etc/monitor/config.yaml:ro" \
#       -v monitor-data:/var/lib/monitor --stop-timeout 75 monitor
# The config's exporter.listen must be 0.0.0.0:9464 to be reachable from outside the container
# (then POST /-/reload is off unless exporter.enable_reload: true; SIGHUP still reloads),
# and storage.url should point into /var/lib/monitor (or at PostgreSQL).
#
# Network-namespace vantages need CAP_SYS_ADMIN, which a non-root user cannot hold across exec:
# start the container as root with the capability and the host's namespaces; the entrypoint
# drops to the `monitor` user keeping CAP_SYS_ADMIN alone (deploy/docker-entrypoint.sh):
#   docker run --user 0 --cap-add SYS_ADMIN -v /run/netns:/run/netns:ro … monitor
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /opt/monitor
COPY pyproject.toml README.md ./
COPY monitor ./monitor
COPY deploy/docker-entrypoint.sh /usr/local/bin/docker-entrypoint
COPY monitor/data/config.example.yaml /etc/monitor/config.yaml
RUN pip install . \
 && rm -rf /opt/monitor/build \
 && useradd --system --uid 10001 --home-dir /var/lib/monitor --create-home monitor

USER monitor
WORKDIR /var/lib/monitor
EXPOSE 9464
# SIGTERM stops gracefully: running probes get up to 30 s, then queued results are flushed
# (up to 30 s more if the database is slow; what it cannot take stays in the spool). Give the
# container more than Docker's default 10 s: `docker run --stop-timeout 75`, compose
# `stop_grace_period: 75s`.
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=30s --timeout=3s CMD python -c "import urllib.request,sys; urllib.request.urlopen('http://127.0.0.1:9464/healthz', timeout=2)" || exit 1
ENTRYPOINT ["docker-entrypoint", "monitor"]
CMD ["run", "-c", "/etc/monitor/config.yaml"]
