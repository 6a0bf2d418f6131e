"""What a run tells its user: the summary, progress, the report's data and its HTML page."""
