"""Weighing-indicator driver: continuous-output indicators on a serial line (pyserial)."""
