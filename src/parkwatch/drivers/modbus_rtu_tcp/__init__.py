"""Modbus RTU over TCP: an RS-485 bus reached through a serial server or a 4G DTU."""
