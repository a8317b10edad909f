"""Modbus TCP: devices that speak Modbus TCP (MBAP framing) themselves."""
