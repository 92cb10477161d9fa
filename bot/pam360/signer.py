"""Turns a validated signing request into one signCSR call, and its answer into an outcome."""

from __future__ import annotations

import logging

from bot.commands import SignSpec
from bot.pam360.client import PAM360Client
from bot.pam360.errors import OutcomeUnknown, PAM360Error
from bot.pam360.models import MSCASigning, RootSigning, Signing
from bot.workflow import SignOutcome

logger = logging.getLogger(__name__)


def signing_for(spec: SignSpec) -> Signing:
    """The PAM360 request body's details for a spec."""
    if spec.sign_type == "msca":
        return MSCASigning(
            csr_id=spec.csr_id,
            server=spec.msca_server or "",
            ca=spec.msca_ca or "",
            template=spec.msca_template or "",
            days=spec.days,
        )
    return RootSigning(
        csr_id=spec.csr_id,
        root_name=spec.root_name or "",
        root_serial=spec.root_serial or "",
        days=spec.days or 0,
        intermediate=spec.intermediate,
    )


class PAM360Signer:
    """The workflow's signer, backed by PAM360's signCSR."""

    def __init__(self, client: PAM360Client) -> None:
        self.client = client

    def sign(self, spec: SignSpec) -> SignOutcome:
        try:
            signing = signing_for(spec)
        except ValueError as exc:
            return SignOutcome("failed", f"The request could not be sent to PAM360: {exc}")
        try:
            result = self.client.sign_csr(signing, org=spec.org)
        except OutcomeUnknown as exc:
            return SignOutcome("unknown", str(exc))
        except PAM360Error as exc:
            return SignOutcome("failed", str(exc))
        except Exception:
            # A bug on our side after the call may have left a certificate behind.
            logger.exception("signing CSR %d failed unexpectedly", spec.csr_id)
            return SignOutcome(
                "unknown",
                "Something went wrong in signcsr-bot while signing; PAM360 may have signed."
                " Check PAM360 before asking again.",
            )
        return SignOutcome(
            "signed",
            result.message,
            certificate_id=None if result.certificate_id is None else str(result.certificate_id),
            common_name=result.common_name,
            serial_number=result.serial_number,
        )
