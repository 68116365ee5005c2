"""Grafana boards for monitor, as code (the Grafana Foundation SDK): `python -m grafana.generate`."""
