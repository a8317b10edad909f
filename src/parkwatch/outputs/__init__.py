"""On-site linkage (联动): the sounders, strobes, PA triggers and relays an alarm switches, and
their supervision.

* :mod:`parkwatch.config.outputs`: the `outputs` and `linkage` sections of the park config;
* :mod:`.checks`: what a field engineer gets wrong in them, with file, line and key path;
* :mod:`.demand`: which outputs the open alarms demand, and an operator's silence;
* :mod:`.bank`: each output's wanted and observed state, its supervision and its fault;
* the drivers switch them: a driver type that can declares ``outputs`` in its registry line
  (Modbus RTU coils and registers, MQTT command topics).
"""
