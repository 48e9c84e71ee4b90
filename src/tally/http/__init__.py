"""The HTTP server: ingestion endpoints per protocol, the read API and operations endpoints."""
