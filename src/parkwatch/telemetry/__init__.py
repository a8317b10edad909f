"""Telemetry: readings, aggregates and alarm events to InfluxDB, through an on-disk spool.

See docs/telemetry.md; the schema lives in :mod:`parkwatch.telemetry.schema`.
"""
