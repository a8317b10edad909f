"""The command center's web console: the live board, an alarm's page, acknowledging, login;
/healthz and /metrics.  Served by the center's own process (uvicorn on a thread)."""
