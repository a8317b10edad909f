"""MQTT device driver: subscribes with topic templates and turns payloads into readings."""
