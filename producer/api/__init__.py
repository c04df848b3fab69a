"""HTTP routes of the producer."""
