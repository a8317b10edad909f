"""The daemon: wiring of drivers, rules, alarms and uplink; signals; logging."""
