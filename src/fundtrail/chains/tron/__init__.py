"""TRON: address codec and HTTP API decoding."""
