"""Code the services share (they import nothing from each other): each module says what it
holds."""
