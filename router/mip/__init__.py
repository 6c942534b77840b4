"""Mobile IPv4 protocol core (pure: no I/O, no clock, no sockets).

Wire codecs, extensions, authentication, identification, the mobile node's
registration machine and the home agent's binding logic. Time is always a
parameter (``now``, seconds as float); output is pulled by the caller.
"""
