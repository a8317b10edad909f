"""Notification channels: how an alarm change reaches a configured target (`alarms.targets`).

One module per channel holds the target's config model, its sender and its
:class:`~parkwatch.alarms.channels.base.Channel` entry; :mod:`.registry` lists them, one line
each.  The command-center contract (:mod:`.uplink`) is built in, not configured, and is not in
the registry.  docs/alarms.md ("Adding a notification channel") says what a new one takes.
"""
