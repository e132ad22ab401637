"""Attribution labels with provenance: taxonomy, importers and the label store."""
