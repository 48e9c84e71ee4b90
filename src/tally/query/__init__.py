"""Analytics queries: one query model (``model``), compiled to the event store's SQL
(``duckdb_sql`` holds every dialect-specific piece), run and shaped into answers (``run``)."""
