"""Namespace labs: topologies of network namespaces for tests and the demo mesh."""
