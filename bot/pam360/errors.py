"""What can go wrong talking to PAM360, each kind with words a person can act on."""

from __future__ import annotations


class PAM360Error(Exception):
    """Root of every PAM360 client error; `str()` is safe to show to users."""


class PAM360Failure(PAM360Error):
    """PAM360 did not do what was asked, and we know it did not."""


class AuthenticationRefused(PAM360Failure):
    """PAM360 refused the AUTHTOKEN."""

    def __init__(self, detail: str = "") -> None:
        words = "PAM360 refused the API token (AUTHTOKEN): check PAM360_AUTHTOKEN"
        words += " and that the API user is active and allowed to sign."
        if detail:
            words += f" PAM360 said: {detail}"
        super().__init__(words)


class PAM360Refused(PAM360Failure):
    """PAM360 answered with a status other than Success."""

    def __init__(self, message: str, status: str = "Failed") -> None:
        self.pam360_message = message
        self.status = status
        super().__init__(f"PAM360 said: {message}" if message else f"PAM360 answered {status}.")


class NotJSON(PAM360Failure):
    """The answer was not PAM360's JSON: a login page, a proxy's error page."""

    def __init__(self, url: str, status_code: int, content_type: str) -> None:
        kind = "an HTML page" if "html" in content_type.lower() else "something other than JSON"
        super().__init__(
            f"PAM360 at {url} answered {kind} (HTTP {status_code}) instead of its API's JSON:"
            " check that PAM360_URL points at PAM360 itself and not at a login page or proxy."
        )


class HTTPStatusError(PAM360Failure):
    """PAM360 (or something in front of it) answered with an HTTP error status."""

    def __init__(self, url: str, status_code: int, reason: str) -> None:
        self.status_code = status_code
        super().__init__(f"PAM360 at {url} answered HTTP {status_code} {reason}.".rstrip())


class UnsendableRequest(PAM360Failure):
    """A header value HTTP cannot carry (a line break, a character outside Latin-1); nothing
    was sent."""


class TLSVerificationFailed(PAM360Failure):
    """PAM360's certificate did not verify against the trusted CAs."""

    def __init__(self, url: str) -> None:
        super().__init__(
            f"Could not verify the TLS certificate of PAM360 at {url}. If PAM360 uses a"
            " private CA, set PAM360_CA_BUNDLE to a PEM file with that CA's certificate."
        )


class ConnectionFailed(PAM360Failure):
    """Nothing reached PAM360: refused, unreachable, name not found."""

    def __init__(self, url: str) -> None:
        super().__init__(
            f"Could not connect to PAM360 at {url}: check PAM360_URL and that PAM360 is running"
            " and reachable from the bot."
        )


class TimedOut(PAM360Failure):
    """PAM360 did not answer in time, on a call that changes nothing."""

    def __init__(self, url: str, seconds: float) -> None:
        super().__init__(
            f"PAM360 at {url} did not answer within {seconds:g} seconds (PAM360_TIMEOUT)."
        )


class OutcomeUnknown(PAM360Error):
    """A signCSR may have reached PAM360 and got no clear answer. Not a failure: the
    certificate may exist. It is never re-sent automatically."""

    def __init__(self, url: str, what_happened: str) -> None:
        self.what_happened = what_happened
        super().__init__(
            f"No clear answer: {what_happened} after the request was sent to PAM360 at {url},"
            " so PAM360 may have signed the CSR. Check PAM360's certificates before asking"
            " again."
        )
