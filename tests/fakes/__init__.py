"""Fakes shared by `tests/` and `bench/`: a PEP 691 index with its file host (`pypi`), and the Dragonfly
mainframe API (`mainframe`); both serve real HTTP on 127.0.0.1."""
