"""The local SQLite results store (`db`) and the per-file scan cache kept in it (`content_cache`)."""

STORE_ENV = "DRAGONFLY_STORE"
"""The variable naming the results store (``scan --store``, ``watch``, ``report``): read without importing
``db`` (sqlite3), which a scan without a store never needs."""
