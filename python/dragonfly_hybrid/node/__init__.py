"""The Dragonfly scanning node: claims jobs (`sources`), downloads and scans them (`pipeline`), delivers
results (`sinks`); `jobs` is the contract between them, `mainframe` the HTTP client, `service` the wiring."""
