"""MQTT plumbing shared by the device driver, the uplink and the tools."""
