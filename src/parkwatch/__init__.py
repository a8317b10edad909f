"""parkwatch: edge gateway daemon for factory-park safety (floor load, fire, water level)."""

__version__ = "0.1.0"
