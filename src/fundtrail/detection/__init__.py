"""Typology detectors, the alert queue and the learned scorer."""
