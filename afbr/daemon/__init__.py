"""The afbr daemon: the composition root that moves events between the cores and adapters."""
