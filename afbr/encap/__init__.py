"""Encap manager: the desired softwire state derived from the RIB and the local config (no I/O)."""
