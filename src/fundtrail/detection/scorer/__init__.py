"""The learned scorer: LightGBM over per-transaction graph features, trained on a simulated world's truth,
calibrated, explained by its top feature contributions (docs/detectors/scorer.md)."""
