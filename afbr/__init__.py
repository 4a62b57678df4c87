"""afbr: a softwire-mesh Address Family Border Router daemon (RFC 5565, RFC 5619)."""

__version__ = "0.1.0"
