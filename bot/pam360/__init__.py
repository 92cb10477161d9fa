"""A PAM360 REST client: one transport, one method per endpoint."""
