"""Alarms: turning rule transitions into contract events, their lifecycle and their delivery."""
