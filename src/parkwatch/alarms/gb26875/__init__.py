"""GB/T 26875.3-2011, the protocol between a user information transmission device
(用户信息传输装置) and a city fire remote monitoring center (城市消防远程监控中心): the codes
(:mod:`.codes`), the frame (:mod:`.frame`), its information objects (:mod:`.objects`) and
the device's TCP session (:mod:`.session`).  Stdlib only: the config schema imports the
channel that uses it."""
