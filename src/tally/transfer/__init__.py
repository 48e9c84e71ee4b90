"""Data in and out: exports (CSV, JSON lines, Parquet), imports through the pipeline, a person's
events and their erasure, and per-app retention. See docs/export-import.md."""
