"""A PAM360-compatible HTTPS server with a real CA, for demos and tests."""
