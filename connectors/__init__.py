"""One sub-package per platform. Connectors import `hub` only, never each other."""
