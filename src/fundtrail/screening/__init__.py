"""Screening: precomputed exposure of clusters to attribution categories, and the screener over it."""
