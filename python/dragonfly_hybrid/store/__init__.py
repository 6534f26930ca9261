"""The local SQLite results store (`db`) and the per-file scan cache kept in it (`content_cache`)."""
