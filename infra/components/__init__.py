"""One ComponentResource per concern; ``__main__`` wires them together."""
