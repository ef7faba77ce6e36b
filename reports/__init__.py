"""Self-contained HTML reports built from a finished run's files."""
