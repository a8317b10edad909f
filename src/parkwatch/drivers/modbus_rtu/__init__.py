"""Modbus RTU driver: a bus scheduler per RS-485 port, pymodbus for the protocol."""
