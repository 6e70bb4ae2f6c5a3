"""Generated wire code (do not edit)."""
