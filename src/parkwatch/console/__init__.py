"""The operator console (`parkwatch watch`): a live board of the open alarms of many parks.

:mod:`.board` is the model fed with the uplink broker's messages, :mod:`.render` draws it with
rich, :mod:`.keys` reads the keyboard, :mod:`.settings` turns the command line into broker
settings and :mod:`.app` runs the loop that ties them together.
"""
