"""The test suite (a package, so that `bench/` and child processes import its helpers as `tests.*`)."""
