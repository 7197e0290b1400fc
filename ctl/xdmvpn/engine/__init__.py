"""The NHRP protocol engine: pure state machines driven by packets and a clock.

Nothing here does I/O: handlers return or record effects (packets to send, NBMA mappings and
routes to install), which the daemon carries out and the tests inspect.
"""
