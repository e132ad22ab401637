"""Bitcoin: wire-format decoding, script classification and address codecs."""
