"""A driver for devices that send one JSON datagram per reading over UDP."""
