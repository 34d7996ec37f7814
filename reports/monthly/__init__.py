"""The monthly post-loan management report: figures, versions, PDF and Excel files."""
