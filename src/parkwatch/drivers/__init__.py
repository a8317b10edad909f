"""Drivers turn device bytes into readings; they never evaluate rules."""
