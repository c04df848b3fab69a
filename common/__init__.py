"""Code the services share (JSON logging)."""
