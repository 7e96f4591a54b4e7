"""Simulated GSM modem pool on pseudo-terminals (demo, tests, benchmarks, training).

Layers, bottom up: identity/makes (static facts) -> device.SimModem (pure AT interpreter,
no I/O) -> pty_port.PtyPort (one pty, one reader thread, one timer thread per plugged port)
-> pool.SimPool (owns ports, network.Network journal and control.ControlServer) -> serve().

Threads: each plugged port owns a reader thread (select on the master fd) and a timer thread
(delayed +CMGS answers); both take the port's I/O lock before touching its SimModem, and both
are joined on unplug. The control server runs one accept thread plus one per connection;
SimPool.stop() shuts them down. Network.submit() is called from port threads under its lock.
"""
