"""A fake Twilio REST API, served for real on loopback, for tests that send SMS and calls.

It follows Twilio's documented request and response shapes (API version 2010-04-01):

- ``POST /2010-04-01/Accounts/{AccountSid}/Messages.json`` and ``.../Calls.json``, form
  encoded, with HTTP Basic auth ``AccountSid:AuthToken``; anything else answers 401 with
  Twilio's error 20003;
- a missing field answers 400 with Twilio's code for it (21604: no To; 21603: no From or
  MessagingServiceSid; 21602: no Body; 21617: a Body over 1,600 characters; for calls 21201,
  21213, 21205, and 32018 for inline TwiML over 4,000 characters);
- success answers 201 with the Message or Call resource: ``sid`` is ``SM`` or ``CA`` and 32
  hex digits, ``num_segments`` a string (``"0"`` through a Messaging Service, as Twilio
  does), ``status`` ``queued`` (``accepted`` through a Messaging Service);
- every error body is Twilio's ``{"code", "message", "more_info", "status"}``.

Every request is recorded (``requests``), whatever was answered. Scripting, all of it safe to
call from the test's thread while the server runs in its own:

    twilio = FakeTwilio()
    twilio.reject("+15005550001", 21211)      # every send to this number: that error
    twilio.fail_next(2, status=503)           # the next two requests: 503
    twilio.fail_next(1, status=429, retry_after=7)
    twilio.hang_next(1)                       # the next request never answers (until the
                                              # server stops): the client must time out
    with twilio.serve() as base_url:
        ...                                   # an adapter configured with base_url
        twilio.reset()                        # the next test starts from a clean slate

And the other way round: ``twilio.status_callback(sid, "delivered")`` is the status callback
Twilio would post for a resource it created, signed as Twilio signs (``twilio_signature``);
``twilio.post(callback)`` delivers it to the StatusCallback URL the resource was created with.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import threading
import uuid
from collections import deque
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any
from urllib.parse import parse_qsl, urlencode

import httpx
from anyio import to_thread
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from junction.domain.sms import segment
from tests.e2e.server import serving

ACCOUNT_SID = "AC" + "0123456789abcdef" * 2
AUTH_TOKEN = "fake-twilio-auth-token-0001"
API = "/2010-04-01"

# Twilio's own wording for the errors the fake answers.
MESSAGES: Mapping[int, str] = {
    20003: "Authenticate",
    20429: "Too Many Requests",
    20500: "Internal Server Error",
    20503: "Service Unavailable",
    21201: "No 'To' number is specified",
    21205: "Url parameter is required",
    21211: "The 'To' number is not a valid phone number.",
    21213: "No 'From' number is specified",
    21602: "Message body is required.",
    21603: "A 'From' or 'MessagingServiceSid' parameter is required to send a message.",
    21604: "A 'To' phone number is required.",
    21610: "Attempt to send to unsubscribed recipient",
    21614: "'To' number is not a valid mobile number",
    21617: "The concatenated message body exceeds the 1600 character limit.",
    32018: "Twiml size exceeded maximum allowed value of 4000 characters",
}
OUTAGE_CODES = {429: 20429, 500: 20500, 503: 20503}


def twilio_signature(auth_token: str, url: str, params: Mapping[str, str]) -> str:
    """X-Twilio-Signature, as Twilio documents it: the full URL, then each parameter's name
    and value with names sorted, HMAC-SHA1 keyed with the auth token, base64-encoded."""
    signed = url + "".join(name + params[name] for name in sorted(params))
    digest = hmac.new(auth_token.encode(), signed.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


@dataclass
class Recorded:
    """One request the fake received, and what it answered."""

    resource: str  # "Messages" or "Calls"
    account_sid: str  # as in the path
    auth: tuple[str, str] | None  # Basic credentials as sent
    fields: list[tuple[str, str]]  # every form pair, in order (StatusCallbackEvent repeats)
    headers: dict[str, str]
    client: tuple[str, int] | None  # the caller's address: one connection, one port
    answered: int | None = None  # None while (or if) it hangs

    @property
    def form(self) -> dict[str, str]:
        """The form fields, the first value of each."""
        found: dict[str, str] = {}
        for name, value in self.fields:
            found.setdefault(name, value)
        return found

    def all(self, name: str) -> list[str]:
        return [value for key, value in self.fields if key == name]


@dataclass(frozen=True)
class SignedCallback:
    """A status callback as Twilio posts it."""

    url: str
    params: dict[str, str]
    headers: dict[str, str]

    @property
    def body(self) -> bytes:
        return urlencode(self.params).encode()


@dataclass(frozen=True)
class _Outage:
    status: int
    retry_after: float | None


_NORMAL = _Outage(201, None)  # the script is empty: answer as Twilio would


@dataclass
class FakeTwilio:
    account_sid: str = ACCOUNT_SID
    auth_token: str = AUTH_TOKEN
    requests: list[Recorded] = field(default_factory=list)
    created: dict[str, dict[str, Any]] = field(default_factory=dict)  # sid → resource
    base_url: str = ""  # while serving

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._rejections: dict[str, tuple[int, int]] = {}  # number → (HTTP status, code)
        self._script: deque[_Outage | None] = deque()  # None: hang
        self._callback_urls: dict[str, str] = {}
        self._release = threading.Event()  # lets hanging requests go (reset, or server stop)
        self.app = self._build_app()

    def reset(self) -> None:
        """Forget every request, resource and script, and let hanging requests go: one
        server can then serve many tests."""
        with self._lock:
            self.requests.clear()
            self.created.clear()
            self._rejections.clear()
            self._script.clear()
            self._callback_urls.clear()
            self._release.set()
            self._release = threading.Event()

    # -- scripting ---------------------------------------------------------------------

    def reject(self, number: str, code: int, status: int = 400) -> None:
        """Answer every send to ``number`` with Twilio's error ``code``."""
        with self._lock:
            self._rejections[number] = (status, code)

    def fail_next(self, count: int, status: int = 503, retry_after: float | None = None) -> None:
        """Answer the next ``count`` requests with ``status`` (and Retry-After if given)."""
        with self._lock:
            self._script.extend([_Outage(status, retry_after)] * count)

    def hang_next(self, count: int = 1) -> None:
        """Accept the next ``count`` requests and never answer them while serving."""
        with self._lock:
            self._script.extend([None] * count)

    @contextmanager
    def serve(self) -> Iterator[str]:
        """Serve on a free loopback port; yields the base URL to configure."""
        with serving(self.app) as base_url:
            self.base_url = base_url
            try:
                yield base_url
            finally:
                self.reset()  # before the server waits for its hanging requests to end

    # -- what was sent -----------------------------------------------------------------

    @property
    def messages(self) -> list[Recorded]:
        """Message creations that succeeded."""
        return [r for r in self.requests if r.resource == "Messages" and r.answered == 201]

    @property
    def calls(self) -> list[Recorded]:
        return [r for r in self.requests if r.resource == "Calls" and r.answered == 201]

    # -- status callbacks --------------------------------------------------------------

    def status_callback(
        self,
        sid: str,
        status: str,
        error_code: str | None = None,
        url: str | None = None,
    ) -> SignedCallback:
        """The status callback Twilio would post for a created message or call."""
        resource = self.created[sid]
        target = url or self._callback_urls.get(sid)
        if target is None:
            raise ValueError(f"{sid} was created without a StatusCallback; give url")
        params = {
            "AccountSid": self.account_sid,
            "ApiVersion": API.strip("/"),
            "From": resource["from"] or "",
            "To": resource["to"],
        }
        if sid.startswith("SM"):
            params |= {
                "MessageSid": sid,
                "MessageStatus": status,
                "SmsSid": sid,
                "SmsStatus": status,
            }
        else:
            params |= {
                "CallSid": sid,
                "CallStatus": status,
                "Called": resource["to"],
                "Caller": resource["from"],
                "Direction": "outbound-api",
                "CallbackSource": "call-progress-events",
            }
            if status == "completed":
                params["CallDuration"] = "12"
        if error_code:
            params["ErrorCode"] = error_code
        headers = {
            "Content-Type": "application/x-www-form-urlencoded",
            "X-Twilio-Signature": twilio_signature(self.auth_token, target, params),
            "I-Twilio-Idempotency-Token": str(uuid.uuid4()),
            "User-Agent": "TwilioProxy/1.1",
        }
        return SignedCallback(target, params, headers)

    def post(self, callback: SignedCallback) -> httpx.Response:
        """Deliver a status callback, as Twilio does: one form POST."""
        return httpx.post(callback.url, content=callback.body, headers=callback.headers)

    # -- the API -----------------------------------------------------------------------

    def _build_app(self) -> FastAPI:
        app = FastAPI()

        @app.post(API + "/Accounts/{account_sid}/{resource}.json")
        async def create(account_sid: str, resource: str, request: Request) -> JSONResponse:
            recorded = Recorded(
                resource=resource,
                account_sid=account_sid,
                auth=_basic(request.headers.get("authorization", "")),
                fields=parse_qsl((await request.body()).decode(), keep_blank_values=True),
                headers=dict(request.headers),
                client=(request.client.host, request.client.port) if request.client else None,
            )
            self.requests.append(recorded)
            answer = await self._answer(recorded)
            recorded.answered = answer.status_code
            return answer

        return app

    async def _answer(self, request: Recorded) -> JSONResponse:
        with self._lock:
            scripted = self._script.popleft() if self._script else _NORMAL
            release = self._release
        if scripted is None:
            await to_thread.run_sync(release.wait)
            return _error(503, 20503)  # too late: the client gave up long ago
        if scripted is not _NORMAL:
            headers = {}
            if scripted.retry_after is not None:
                headers["Retry-After"] = f"{scripted.retry_after:g}"
            return _error(scripted.status, OUTAGE_CODES.get(scripted.status, 20500), headers)
        if request.auth != (self.account_sid, self.auth_token) or (
            request.account_sid != self.account_sid
        ):
            return _error(401, 20003, {"WWW-Authenticate": 'Basic realm="Twilio API"'})
        if request.resource == "Messages":
            return self._create_message(request.form)
        if request.resource == "Calls":
            return self._create_call(request.form)
        return _error(404, 20404)

    def _create_message(self, form: dict[str, str]) -> JSONResponse:
        to, body = form.get("To"), form.get("Body")
        sender, service = form.get("From"), form.get("MessagingServiceSid")
        if not to:
            return _error(400, 21604)
        if not sender and not service:
            return _error(400, 21603)
        if not body:
            return _error(400, 21602)
        if len(body) > 1600:
            return _error(400, 21617)
        if rejected := self._rejection(to):
            return rejected
        sid = "SM" + uuid.uuid4().hex
        now = _rfc2822()
        resource = {
            "account_sid": self.account_sid,
            "api_version": API.strip("/"),
            "body": body,
            "date_created": now,
            "date_sent": None,
            "date_updated": now,
            "direction": "outbound-api",
            "error_code": None,
            "error_message": None,
            "from": sender,
            "messaging_service_sid": service,
            "num_media": "0",
            "num_segments": "0" if service else str(segment(body).segments),
            "price": None,
            "price_unit": "USD",
            "sid": sid,
            "status": "accepted" if service else "queued",
            "subresource_uris": {"media": f"{self._uri(sid)[:-5]}/Media.json"},
            "to": to,
            "uri": self._uri(sid),
        }
        return self._created(resource, form)

    def _create_call(self, form: dict[str, str]) -> JSONResponse:
        to, sender = form.get("To"), form.get("From")
        instructions = form.get("Twiml") or form.get("Url") or form.get("ApplicationSid")
        if not to:
            return _error(400, 21201)
        if not sender:
            return _error(400, 21213)
        if not instructions:
            return _error(400, 21205)
        if len(form.get("Twiml", "")) > 4000:
            return _error(400, 32018)
        if rejected := self._rejection(to):
            return rejected
        sid = "CA" + uuid.uuid4().hex
        now = _rfc2822()
        resource = {
            "account_sid": self.account_sid,
            "answered_by": None,
            "api_version": API.strip("/"),
            "date_created": now,
            "date_updated": now,
            "direction": "outbound-api",
            "duration": None,
            "end_time": None,
            "from": sender,
            "from_formatted": sender,
            "parent_call_sid": None,
            "price": None,
            "price_unit": "USD",
            "sid": sid,
            "start_time": None,
            "status": "queued",
            "to": to,
            "to_formatted": to,
            "uri": self._uri(sid),
        }
        return self._created(resource, form)

    def _rejection(self, number: str) -> JSONResponse | None:
        with self._lock:
            rejected = self._rejections.get(number)
        return _error(*rejected) if rejected else None

    def _created(self, resource: dict[str, Any], form: dict[str, str]) -> JSONResponse:
        sid = resource["sid"]
        self.created[sid] = resource
        if form.get("StatusCallback"):
            self._callback_urls[sid] = form["StatusCallback"]
        return JSONResponse(resource, status_code=201)

    def _uri(self, sid: str) -> str:
        kind = "Messages" if sid.startswith("SM") else "Calls"
        return f"{API}/Accounts/{self.account_sid}/{kind}/{sid}.json"


def _basic(header: str) -> tuple[str, str] | None:
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        username, _, password = base64.b64decode(encoded).decode().partition(":")
    except ValueError:
        return None
    return username, password


def _error(status: int, code: int, headers: dict[str, str] | None = None) -> JSONResponse:
    body = {
        "code": code,
        "message": MESSAGES.get(code, "Error"),
        "more_info": f"https://www.twilio.com/docs/errors/{code}",
        "status": status,
    }
    return JSONResponse(body, status_code=status, headers=headers)


def _rfc2822() -> str:
    return format_datetime(datetime.now(UTC))
