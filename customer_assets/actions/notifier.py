"""The Notifier resource: sends SMS through Twilio's REST API, or only writes the outbox (dry run).

Sending needs TWILIO_ACCOUNT_SID, TWILIO_AUTH_TOKEN and TWILIO_PHONE_NUMBER (wired through
`dg.EnvVar` in resources.build_resources, so the UI shows the variable names, never the values).
Without all three, or with dry_run=True, nothing leaves the machine.

The call is one form POST to {api_base_url}/2010-04-01/Accounts/{sid}/Messages.json with HTTP
basic auth (Twilio's documented REST form), made with urllib: the optional `twilio` package is
not needed. `api_base_url` is configurable so tests point it at a local HTTP server.

Secrets never leave this class: errors are scrubbed of the account sid and token, and nothing
here logs the request.
"""

from __future__ import annotations

import base64
import json
import re
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import Optional

import dagster as dg
from pydantic import Field

E164 = re.compile(r"^\+[1-9]\d{6,14}$")


def normalize_phone(raw) -> Optional[str]:
    """An E.164 number (+447700900123) from a contact-file value, or None if it is not one."""
    if raw is None:
        return None
    s = re.sub(r"[\s\-().]", "", str(raw))
    if s.startswith("00"):
        s = "+" + s[2:]
    return s if E164.match(s) else None


def mask_phone(phone: Optional[str]) -> Optional[str]:
    """+447700900123 -> +44*******123 (enough to recognise, not enough to dial)."""
    if not phone:
        return None
    return phone[:3] + "*" * max(len(phone) - 6, 0) + phone[-3:]


@dataclass
class SendResult:
    ok: bool
    provider_message_id: Optional[str] = None
    error: Optional[str] = None


class Notifier(dg.ConfigurableResource):
    """SMS sender for retention messages. Dry run (outbox only) unless Twilio credentials are set."""

    account_sid: Optional[str] = Field(default=None, description="Env: TWILIO_ACCOUNT_SID.")
    auth_token: Optional[str] = Field(default=None, description="Env: TWILIO_AUTH_TOKEN (secret).")
    from_number: Optional[str] = Field(default=None, description="Sender number. Env: TWILIO_PHONE_NUMBER.")
    api_base_url: str = Field(
        default="https://api.twilio.com", description="SMS API base URL (tests use a local server)."
    )
    dry_run: bool = Field(default=False, description="Never send, even with credentials set.")
    timeout_seconds: float = Field(default=10.0, description="HTTP timeout per message.")
    max_sends_per_run: int = Field(default=500, description="Upper bound on SMS sent by one run.")
    max_attempts: int = Field(
        default=5, description="A failed message is retried on later runs up to this many attempts."
    )

    def sending_enabled(self) -> bool:
        return not self.dry_run and bool(self.account_sid and self.auth_token and self.from_number)

    def mode_reason(self) -> str:
        if self.dry_run:
            return "dry run: dry_run=True"
        missing = [
            name
            for name, value in (
                ("TWILIO_ACCOUNT_SID", self.account_sid),
                ("TWILIO_AUTH_TOKEN", self.auth_token),
                ("TWILIO_PHONE_NUMBER", self.from_number),
            )
            if not value
        ]
        if missing:
            return "dry run: " + ", ".join(missing) + " not set"
        return "sending SMS"

    def _scrub(self, text: str) -> str:
        for secret in (self.auth_token, self.account_sid):
            if secret:
                text = text.replace(secret, "***")
        return text[:300]

    def send_sms(self, to: str, body: str) -> SendResult:
        """POST one message. Never raises for a failed send: the caller records the error."""
        if not self.sending_enabled():
            return SendResult(False, error=self.mode_reason())
        url = (
            f"{self.api_base_url.rstrip('/')}/2010-04-01/Accounts/"
            f"{urllib.parse.quote(self.account_sid, safe='')}/Messages.json"
        )
        data = urllib.parse.urlencode({"To": to, "From": self.from_number, "Body": body}).encode()
        auth = base64.b64encode(f"{self.account_sid}:{self.auth_token}".encode()).decode()
        request = urllib.request.Request(
            url,
            data=data,
            method="POST",
            headers={
                "Authorization": f"Basic {auth}",
                "Content-Type": "application/x-www-form-urlencoded",
                "Accept": "application/json",
            },
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_seconds) as response:
                payload = json.loads(response.read().decode() or "{}")
        except urllib.error.HTTPError as e:
            detail = ""
            try:
                err = json.loads(e.read().decode() or "{}")
                detail = f": {err.get('code', '')} {err.get('message', '')}".rstrip()
            except (ValueError, OSError):
                pass
            return SendResult(False, error=self._scrub(f"HTTP {e.code}{detail}"))
        except (urllib.error.URLError, OSError, ValueError) as e:
            reason = getattr(e, "reason", e)
            return SendResult(False, error=self._scrub(f"connection error: {reason}"))
        if payload.get("status") in ("failed", "undelivered"):
            return SendResult(False, payload.get("sid"), self._scrub(f"provider status {payload['status']}"))
        return SendResult(True, payload.get("sid"))
