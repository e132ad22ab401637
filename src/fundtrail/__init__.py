"""fundtrail: an open-source platform against money laundering with crypto-assets."""

__version__ = "0.1.0"
