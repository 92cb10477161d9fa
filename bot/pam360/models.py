"""PAM360's request and answer shapes, as typed models."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator


class RootSigning(BaseModel):
    """Sign a stored CSR with one of PAM360's own root or intermediate CAs."""

    model_config = ConfigDict(frozen=True)

    csr_id: int = Field(gt=0)
    root_name: str = Field(min_length=1)
    root_serial: str = Field(min_length=1)
    days: int = Field(gt=0)
    intermediate: bool = False

    def details(self) -> dict[str, Any]:
        return {
            "signType": "signWithRoot",
            "rootCertificateCommonName": self.root_name,
            "rootCertificateSerialNumber": self.root_serial,
            "Validity": self.days,
            "isIntermediate": "true" if self.intermediate else "false",
            "CSR_ID": str(self.csr_id),
        }


class MSCASigning(BaseModel):
    """Sign a stored CSR through a Microsoft CA that PAM360 is connected to."""

    model_config = ConfigDict(frozen=True)

    csr_id: int = Field(gt=0)
    server: str = Field(min_length=1)
    ca: str = Field(min_length=1)
    template: str = Field(min_length=1)
    days: int | None = Field(default=None, gt=0)

    def details(self) -> dict[str, Any]:
        details: dict[str, Any] = {
            "signType": "MSCA",
            "serverName": self.server,
            "caName": self.ca,
            "templateName": self.template,
            "CSR_ID": str(self.csr_id),
        }
        if self.days is not None:
            details["Validity"] = self.days
        return details


Signing = RootSigning | MSCASigning


class SignResult(BaseModel):
    """PAM360's answer to a successful signCSR."""

    message: str
    common_name: str | None = None
    certificate_id: int | None = None
    serial_number: str | None = None


class CSREntry(BaseModel):
    """One row of getCSRList's GeneratedList."""

    model_config = ConfigDict(populate_by_name=True, extra="ignore")

    csr_id: int = Field(alias="CSR_ID")
    domain_name: str = Field(default="", alias="DOMAIN_NAME")
    key_algorithm: str = Field(default="", alias="KEYALGORITHM")
    key_strength: str = Field(default="", alias="KEY_STRENGTH")
    created_by: str = Field(default="", alias="CREATED_BY")
    created_date: str = Field(default="", alias="CREATED_DATE")

    @field_validator(
        "domain_name", "key_algorithm", "key_strength", "created_by", "created_date", mode="before"
    )
    @classmethod
    def _as_text(cls, value: Any) -> str:
        return "" if value is None else str(value)


class CSRList(BaseModel):
    """getCSRList's answer: the rows and PAM360's count of them."""

    entries: list[CSREntry]
    total_rows: int

    def find(self, csr_id: int) -> CSREntry | None:
        return next((entry for entry in self.entries if entry.csr_id == csr_id), None)


Operation = Literal["signCSR", "getCSRList", "importCSR", "getCertificate"]
