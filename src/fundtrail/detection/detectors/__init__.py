"""One module per detector; each exposes ``DETECTOR`` (see ``fundtrail.detection.base.Detector``)."""
