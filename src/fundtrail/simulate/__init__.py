"""A laundering world with ground truth: a simulator writing real chain formats, and its answer key."""
