"""The vectorised rule engine: sensor state in numpy arrays, all rules over a batch at once."""
