"""`dragonfly-hybrid watch`: new PyPI releases scanned into the local store."""
