"""The platform core: organisations, users, roles and API keys (:mod:`.accounts`, :mod:`.principal`), the
hash-chained audit log (:mod:`.audit`), cases (:mod:`.cases`; who sees them: :mod:`.visibility`; their
subjects, notes and attachments: :mod:`.case_items`) with their re-runnable snapshots (:mod:`.snapshots`),
organisation-private labels (:mod:`.private_labels`), and signed case packages (:mod:`.signing`,
:mod:`.package`, :mod:`.package_verify`). The REST API and the CLI call these functions; every call takes
the acting :class:`~fundtrail.platform.principal.Principal` and enforces what it may see and do.
See docs/platform.md.
"""
