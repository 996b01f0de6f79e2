"""Sample data shipped with arssr (see NOTICE)."""
