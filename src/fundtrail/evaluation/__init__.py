"""Scoring what the platform found against a simulated world's ground truth (``fundtrail evaluate``):
clustering (:mod:`.clustering`), tracing (:mod:`.tracing`, run by :mod:`.trace_runs`), detection
(:mod:`.detection`), the report (:mod:`.report`) and the whole run (:mod:`.run`)."""
