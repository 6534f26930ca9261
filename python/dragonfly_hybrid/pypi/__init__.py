"""PyPI: the index client and downloader, and requirements/lock-file parsing."""
