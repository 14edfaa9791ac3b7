"""One router per resource: runs, compare, health."""
