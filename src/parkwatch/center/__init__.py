"""The command center: a service of its own that listens to every park's contract topics,
stores every event, and shows and commands them.  It depends on the contract (docs/contract.md),
never on the daemon's internals (the import layers in parkwatch.devtools.importgraph)."""
