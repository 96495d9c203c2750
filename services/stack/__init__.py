"""The local runner: the whole stack as supervised processes on loopback."""
