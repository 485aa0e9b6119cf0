"""Reading raw interaction logs (and, later, publishing and exports)."""
