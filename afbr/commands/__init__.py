"""The afbr subcommands; each module registers itself with the CLI."""
