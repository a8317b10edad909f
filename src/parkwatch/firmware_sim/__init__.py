"""Firmware simulator: emulates the park's devices so a gateway can be bench-tested without them."""
