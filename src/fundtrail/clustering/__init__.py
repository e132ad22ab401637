"""Address clustering: grouping addresses into entities, with the evidence behind every merge."""
