"""What every FHIR R4 base of caretrail has in common.

- `mount(app)`: a caller without a valid token gets 401 for anything under the base but its
  public discovery documents, before the path is resolved; every error answered under the
  base is an `OperationOutcome`, whatever raised it (a domain error, an unmatched route, a
  body too large, a crash); never clinical content.
- `negotiate()`: `Accept` and `_format` read as media types with parameters
  (http://hl7.org/fhir/R4/http.html#mime-type); JSON only, FHIR R4 only, else 406.
- `search_parameters()`: strict search (an unknown parameter is a 400) unless the client says
  `Prefer: handling=lenient` (http://hl7.org/fhir/R4/search.html#errors).
- `DateRange`: FHIR `date` search with its prefixes over partial dates.
- `searchset()`, `history()`: Bundles built around each resource's JSON as stored, so decimals
  and times go out exactly as they came in.
- `capability_statement()`, `smart_configuration()`: what a client discovers, generated from
  what the service registers and what its configuration names.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

import orjson
from flask import Flask, Response, request

from shared.config import Settings
from shared.errors import DomainError
from shared.http import current_principal, service_settings
from shared.problems import FHIR_BASE, FHIR_JSON, PROBLEM_JSON

FHIR_VERSION = "4.0.1"
# What a client reads before it has a token (documented `security: []`), under the base.
PUBLIC_PATHS = ("/metadata", "/.well-known/smart-configuration")
# Parameters every interaction takes that are not search criteria.
RESULT_PARAMETERS = frozenset({"_format", "_count", "_cursor", "_sort", "_pretty"})
_JSON_TYPES = (FHIR_JSON, "application/json")
_FORMATS = {"json": FHIR_JSON, FHIR_JSON: FHIR_JSON, "application/json": "application/json"}
# http://hl7.org/fhir/R4/valueset-issue-type.html, by HTTP status
_ISSUE_CODES = {
    400: "invalid",
    401: "login",
    403: "forbidden",
    404: "not-found",
    405: "not-supported",
    406: "not-supported",
    409: "conflict",
    410: "deleted",
    412: "conflict",
    413: "too-costly",
    415: "not-supported",
    422: "processing",
}


class NotAcceptable(DomainError):
    status = 406
    title = "Not Acceptable"


class UnsupportedSearch(DomainError):
    """A search parameter the server does not know or cannot apply (400, strict handling)."""

    status = 400
    title = "Bad Request"


# --- OperationOutcome for every error under the base ---------------------------------------


def operation_outcome(
    status: int, detail: str | None, errors: Any = None, code: str | None = None
) -> dict[str, Any]:
    """The OperationOutcome of an error: one issue per element named, else one for the whole."""
    issue_code = code or _ISSUE_CODES.get(status, "exception" if status >= 500 else "processing")
    severity = "fatal" if status >= 500 else "error"
    issues = [
        {"severity": severity, "code": issue_code, "diagnostics": message, "expression": [path]}
        for path, message in _named_elements(errors)
    ]
    if not issues:
        issues = [{"severity": severity, "code": issue_code, "diagnostics": detail or "error"}]
    elif detail:
        issues.insert(0, {"severity": severity, "code": issue_code, "diagnostics": detail})
    return {"resourceType": "OperationOutcome", "issue": issues}


def _named_elements(errors: Any) -> Iterable[tuple[str, str]]:
    """(path, what is wrong) of caretrail's error lists and of webargs' nested message dicts."""
    if isinstance(errors, list):
        for item in errors:
            if isinstance(item, dict) and isinstance(item.get("path"), str):
                yield item["path"], str(item.get("message") or item.get("problem") or "invalid")
    elif isinstance(errors, dict):
        for location in errors.values():
            for name, messages in location.items() if isinstance(location, dict) else ():
                text = "; ".join(messages) if isinstance(messages, list) else str(messages)
                yield str(name), text


def mount(app: Flask, base: str = FHIR_BASE, public: Sequence[str] = PUBLIC_PATHS) -> None:
    """Authenticate every request under `base` first, and answer its errors as OperationOutcomes.

    A caller without a valid token gets 401 whatever the path (an unknown type or id
    included: what exists is not told to someone who may see none of it), except for the
    `public` paths; this runs before the base's own checks (negotiation, the view's).
    The app's own handlers still decide status, headers and logging (a crash is logged, frames
    only, by shared.http); this turns the problem document they wrote into an OperationOutcome
    with the same status, so no error path under the base can answer anything else.
    """
    prefix = base.rstrip("/")
    open_paths = frozenset(prefix + path for path in public)

    def is_under() -> bool:
        return request.path == prefix or request.path.startswith(prefix + "/")

    def authenticated() -> None:
        if is_under() and request.path not in open_paths:
            current_principal()

    def as_outcome(response: Response) -> Response:
        if not is_under() or response.mimetype != PROBLEM_JSON:
            return response
        problem = json.loads(response.get_data())
        outcome = operation_outcome(
            response.status_code,
            problem.get("detail") or problem.get("title"),
            problem.get("errors"),
        )
        response.set_data(orjson.dumps(outcome))
        response.mimetype = FHIR_JSON
        return response

    app.before_request(authenticated)
    app.after_request(as_outcome)


# --- what a FHIR base's OpenAPI document says of every base ----------------------------------


def fhir_answer(description: str = "a FHIR resource or Bundle") -> dict[str, Any]:
    """A success answer's documentation: FHIR JSON in the media type `Accept` or `_format`
    negotiated (its errors are documented by shared.problems' plugin)."""
    schema = {"type": "object"}
    return {
        "description": f"{description}, as `Accept` or `_format` asks",
        "content": {media: {"schema": dict(schema)} for media in _JSON_TYPES},
    }


# http://hl7.org/fhir/R4/http.html#parameters: every interaction takes it; it wins over Accept.
FORMAT_PARAMETER = {
    "in": "query",
    "name": "_format",
    "required": False,
    "schema": {"type": "string", "enum": list(_FORMATS)},
    "description": "the media type of the answer, instead of Accept",
}
PAGING_PARAMETERS = (
    ("_count", "page size, 1 to 100"),
    ("_cursor", "the opaque position of a next link"),
)


def search_parameter_docs(params: Iterable[SearchParam]) -> list[dict[str, Any]]:
    """The OpenAPI query parameters of a search: its criteria as its CapabilityStatement
    declares them, then paging and `_format`."""
    criteria = [(p.name, p.documentation or f"a {p.type} search parameter") for p in params]
    documented: list[dict[str, Any]] = [
        {
            "in": "query",
            "name": name,
            "required": False,
            "schema": {"type": "string"},
            "description": text,
        }
        for name, text in [*criteria, *PAGING_PARAMETERS]
    ]
    return [*documented, FORMAT_PARAMETER]


SMART_ANSWER = {
    "200": {
        "description": "the SMART configuration (SMART App Launch v2)",
        "content": {"application/json": {"schema": {"type": "object"}}},
    }
}


# --- content negotiation ----------------------------------------------------------------------


@dataclass(frozen=True)
class MediaRange:
    """One element of an `Accept` header: `type/subtype` with its parameters and weight."""

    type: str
    params: Mapping[str, str]
    q: float

    def covers(self, media_type: str) -> bool:
        major, _, minor = media_type.partition("/")
        own_major, _, own_minor = self.type.partition("/")
        return own_major in ("*", major) and own_minor in ("*", minor)


def parse_accept(header: str) -> list[MediaRange]:
    """The media ranges of an `Accept` header, most preferred first (RFC 9110 §12.5.1)."""
    ranges = []
    for element in header.split(","):
        media_type, *raw_params = (part.strip() for part in element.split(";"))
        if not media_type:
            continue
        params = {}
        for raw in raw_params:
            name, _, value = raw.partition("=")
            params[name.strip().lower()] = value.strip().strip('"')
        try:
            q = float(params.pop("q", "1"))
        except ValueError:
            q = 0.0
        ranges.append(MediaRange(media_type.lower(), params, q))
    # Most preferred first; at equal weight the more specific range (RFC 9110 §12.5.1).
    return sorted(ranges, key=lambda r: (-r.q, r.type.count("*")))


def negotiate_type(accept: str | None, format_param: str | None = None) -> str:
    """The media type to answer in: `_format` first, then `Accept`; JSON of FHIR R4 only."""
    if format_param is not None:
        media_type = format_param.split(";")[0].strip().lower()
        if media_type not in _FORMATS:
            raise NotAcceptable(f"_format {media_type!r} is not served: use json")
        return _FORMATS[media_type]
    if not accept or not accept.strip():
        return FHIR_JSON
    answer = preferred(accept, _JSON_TYPES)
    if answer is None:
        raise NotAcceptable("this server answers application/fhir+json (FHIR 4.0) only")
    return answer


def preferred(accept: str | None, offers: Sequence[str], default: str | None = None) -> str | None:
    """The first of `offers` the client's most preferred media range covers, reading its
    parameters (a `fhirVersion` other than 4.0 covers nothing); `default` when none does."""
    for media_range in parse_accept(accept or ""):
        if media_range.q <= 0 or not _is_r4(media_range.params.get("fhirversion")):
            continue
        for offer in offers:
            if media_range.covers(offer):
                return offer
    return default


def _is_r4(version: str | None) -> bool:
    return version is None or version == "4.0" or version.startswith("4.0.")


def base_url(base: str = "/fhir") -> str:
    """The absolute URL of the FHIR base the current request came to."""
    return request.url_root.rstrip("/") + base


def negotiate() -> str:
    """The media type to answer the current request in."""
    return negotiate_type(request.headers.get("Accept"), request.args.get("_format"))


def fhir_response(
    body: bytes | Mapping[str, Any], status: int = 200, headers: Mapping[str, str] | None = None
) -> Response:
    """A FHIR answer in the negotiated media type; bytes are sent as they are."""
    payload = body if isinstance(body, bytes) else orjson.dumps(body)
    response = Response(payload, status=status, headers=dict(headers or {}))
    response.mimetype = negotiate()
    if response.mimetype == FHIR_JSON:
        response.headers["Content-Type"] = f"{FHIR_JSON}; fhirVersion=4.0; charset=utf-8"
    return response


# --- Prefer and search parameters ---------------------------------------------------------


def preferences(header: str | None) -> dict[str, str]:
    """The `Prefer` header's preferences (RFC 7240), e.g. `{"return": "minimal"}`."""
    found: dict[str, str] = {}
    for element in (header or "").split(","):
        name, _, value = element.split(";")[0].strip().partition("=")
        if name:
            found[name.strip().lower()] = value.strip().strip('"').lower()
    return found


def search_parameters(
    args: Mapping[str, Sequence[str]], supported: Iterable[str], prefer: str | None = None
) -> dict[str, list[str]]:
    """The search criteria of a request; unknown ones are a 400 unless handling is lenient.

    `args` maps each parameter name (with any `:modifier`) to its values; names in
    `RESULT_PARAMETERS` are passed through for the caller to read.
    """
    known = set(supported) | RESULT_PARAMETERS
    lenient = preferences(prefer).get("handling") == "lenient"
    kept: dict[str, list[str]] = {}
    for name, values in args.items():
        if name in known:
            kept[name] = list(values)
        elif not lenient:
            raise UnsupportedSearch(
                f"search parameter {name!r} is not supported here",
                errors=[{"path": name, "problem": "not-supported", "message": "not supported"}],
            )
    return kept


def count_parameter(values: Sequence[str] | None, default: int = 20, most: int = 100) -> int:
    """`_count` as a page size: 1 to `most` (more is served as `most`, as FHIR allows)."""
    if not values:
        return default
    try:
        count = int(values[-1])
    except ValueError:
        raise UnsupportedSearch("_count must be a whole number") from None
    if count < 1:
        raise UnsupportedSearch("_count must be at least 1")
    return min(count, most)


def token_matches(element: Any, token: str) -> bool:
    """Whether a coded element (a code, Coding, CodeableConcept, or a list of them) matches a
    FHIR token: `code`, `system|code`, `system|` or `|code` (a code without a system)."""
    system, bar, code = token.rpartition("|") if "|" in token else (None, "", token)
    for coding in _codings(element):
        if code and coding.get("code") != code:
            continue
        if bar and coding.get("system") != (system or None):
            continue
        return True
    return False


def _codings(element: Any) -> Iterable[dict[str, Any]]:
    for item in element if isinstance(element, list) else [element]:
        if isinstance(item, str):
            yield {"code": item}
        elif isinstance(item, dict):
            yield from (c for c in item.get("coding", []) if isinstance(c, dict))
            if "code" in item:
                yield item


# --- date search ------------------------------------------------------------------------------

_DATE = re.compile(
    r"^(?P<year>\d{4})(?:-(?P<month>\d{2})(?:-(?P<day>\d{2})"
    r"(?:T(?P<hour>\d{2}):(?P<minute>\d{2})(?::(?P<second>\d{2})(?:\.(?P<fraction>\d+))?)?"
    r"(?P<zone>Z|[+-]\d{2}:\d{2})?)?)?)?$"
)
_PREFIXES = ("eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap")
_SERVED_PREFIXES = ("eq", "gt", "lt", "ge", "le")


def date_span(text: str) -> tuple[datetime, datetime]:
    """The instants a FHIR date, dateTime or instant covers: [start, end), at its precision.

    A time without a zone is taken as UTC (http://hl7.org/fhir/R4/search.html#date leaves it
    to the server).
    """
    match = _DATE.match(text.strip())
    if not match:
        raise ValueError("not a FHIR date")
    parts = match.groupdict()
    year, month, day = int(parts["year"]), int(parts["month"] or 1), int(parts["day"] or 1)
    zone = parts["zone"]
    tz = UTC if zone in (None, "Z") else datetime.strptime(zone, "%z").tzinfo
    fraction = parts["fraction"] or ""
    start = datetime(
        year,
        month,
        day,
        int(parts["hour"] or 0),
        int(parts["minute"] or 0),
        int(parts["second"] or 0),
        int((fraction + "000000")[:6]),
        tzinfo=tz,
    ).astimezone(UTC)
    if parts["month"] is None:
        end = start.replace(year=year + 1)
    elif parts["day"] is None:
        end = start.replace(year=year + month // 12, month=month % 12 + 1)
    elif parts["hour"] is None:
        end = start + timedelta(days=1)
    elif parts["second"] is None:
        end = start + timedelta(minutes=1)
    elif not fraction:
        end = start + timedelta(seconds=1)
    else:
        end = start + timedelta(microseconds=1)
    return start, end


@dataclass(frozen=True)
class DateRange:
    """One `date`-type search value, e.g. `ge2024-01` (http://hl7.org/fhir/R4/search.html#prefix)."""

    prefix: str
    start: datetime
    end: datetime

    @classmethod
    def parse(cls, name: str, text: str) -> DateRange:
        prefix = text[:2] if text[:2] in _PREFIXES else "eq"
        value = text[2:] if text[:2] in _PREFIXES else text
        if prefix not in _SERVED_PREFIXES:
            raise UnsupportedSearch(f"the {prefix} prefix of {name} is not supported")
        try:
            start, end = date_span(value)
        except ValueError:
            raise UnsupportedSearch(f"{name} must be a FHIR date, e.g. ge2024-01-31") from None
        return cls(prefix, start, end)

    def matches(self, start: datetime, end: datetime) -> bool:
        """Whether a value covering [start, end) meets this criterion."""
        within = start >= self.start and end <= self.end
        if self.prefix == "eq":
            return within
        above, below = end > self.end, start < self.start
        return {"gt": above, "lt": below, "ge": above or within, "le": below or within}[self.prefix]


# --- Bundles -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Entry:
    """A Bundle entry: the resource's JSON as stored, and where it lives."""

    full_url: str
    resource: bytes
    # history: the interaction that made this version, e.g. ("PUT", "Observation/1", "200")
    request: tuple[str, str] | None = None
    response_status: str | None = None


def _assemble(envelope: dict[str, Any], entries: list[bytes]) -> bytes:
    head = orjson.dumps(envelope)
    return b"".join((head[:-1], b',"entry":[', b",".join(entries), b"]}"))


def searchset(
    entries: Sequence[Entry],
    *,
    self_url: str,
    next_url: str | None = None,
    total: int | None = None,
    at: datetime | None = None,
) -> bytes:
    """A `searchset` Bundle. `total` only when known without counting what a reader may not
    see: withheld resources are absent and counted nowhere."""
    envelope: dict[str, Any] = {
        "resourceType": "Bundle",
        "type": "searchset",
        "timestamp": _instant(at or datetime.now(UTC)),
    }
    if total is not None:
        envelope["total"] = total
    envelope["link"] = _links(self_url, next_url)
    parts = [
        b'{"fullUrl":%s,"resource":%s,"search":{"mode":"match"}}'
        % (orjson.dumps(e.full_url), e.resource)
        for e in entries
    ]
    return _assemble(envelope, parts)


def history(entries: Sequence[Entry], *, self_url: str, next_url: str | None = None) -> bytes:
    """A `history` Bundle: each entry with the request that made it and its response."""
    envelope: dict[str, Any] = {
        "resourceType": "Bundle",
        "type": "history",
        "timestamp": _instant(datetime.now(UTC)),
        "link": _links(self_url, next_url),
    }
    parts = []
    for e in entries:
        method, url = e.request or ("PUT", e.full_url)
        parts.append(
            b'{"fullUrl":%s,"resource":%s,"request":%s,"response":%s}'
            % (
                orjson.dumps(e.full_url),
                e.resource,
                orjson.dumps({"method": method, "url": url}),
                orjson.dumps({"status": e.response_status or "200"}),
            )
        )
    return _assemble(envelope, parts)


def _links(self_url: str, next_url: str | None) -> list[dict[str, str]]:
    links = [{"relation": "self", "url": self_url}]
    if next_url:
        links.append({"relation": "next", "url": next_url})
    return links


def page_url(url: str, args: Iterable[tuple[str, str]], cursor: str | None = None) -> str:
    """`url` with the request's parameters, and `_cursor` replaced when given."""
    kept = [(k, v) for k, v in args if k != "_cursor"]
    if cursor is not None:
        kept.append(("_cursor", cursor))
    return f"{url}?{urlencode(kept)}" if kept else url


def _instant(at: datetime) -> str:
    return at.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


# --- CapabilityStatement and SMART discovery -------------------------------------------------


@dataclass(frozen=True)
class SearchParam:
    name: str
    type: str  # http://hl7.org/fhir/R4/valueset-search-param-type.html
    documentation: str = ""


@dataclass(frozen=True)
class ResourceSupport:
    """What a base does with one resource type."""

    type: str
    interactions: Sequence[str]  # read, vread, history-instance, create, update, search-type
    search_params: Sequence[SearchParam] = ()
    operations: Sequence[tuple[str, str]] = ()  # (name, OperationDefinition canonical)
    conditional_update: bool = False
    versioning: str = "versioned-update"
    extra: Mapping[str, Any] = field(default_factory=dict)


SMART_CAPABILITIES_ENFORCED = (
    "permission-v1",  # `.read` / `.write` scopes are read as their v2 letters
    "permission-v2",  # c r u d s, each checked per interaction
    "permission-patient",
    "permission-user",
)
_SERVICE_CODING = {
    "system": "http://terminology.hl7.org/CodeSystem/restful-security-service",
    "code": "SMART-on-FHIR",
}


def capability_statement(
    resources: Sequence[ResourceSupport],
    *,
    base_url: str,
    settings: Settings,
    name: str,
    date: str,
    documentation: str = "",
) -> dict[str, Any]:
    """An R4 CapabilityStatement (kind instance) of what `resources` say is served."""
    oauth_uris = [
        {"url": key, "valueUri": value}
        for key, value in (
            ("authorize", settings.smart_authorization_endpoint),
            ("token", settings.smart_token_endpoint),
        )
        if value
    ]
    security: dict[str, Any] = {
        "cors": False,
        "service": [{"coding": [_SERVICE_CODING]}],
        "description": "Bearer tokens with SMART App Launch v2 scopes; "
        "see .well-known/smart-configuration",
    }
    if oauth_uris:
        security["extension"] = [
            {
                "url": "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris",
                "extension": oauth_uris,
            }
        ]
    return {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": date,
        "publisher": "caretrail",
        "kind": "instance",
        "name": name,
        "software": {"name": "caretrail"},
        "implementation": {"description": documentation or name, "url": base_url},
        "fhirVersion": FHIR_VERSION,
        "format": ["json", FHIR_JSON],
        "rest": [
            {
                "mode": "server",
                "documentation": documentation or name,
                "security": security,
                "resource": [_resource_capability(r) for r in resources],
            }
        ],
    }


def _resource_capability(support: ResourceSupport) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "type": support.type,
        "interaction": [{"code": code} for code in support.interactions],
        "versioning": support.versioning,
        "readHistory": "vread" in support.interactions,
        "updateCreate": False,
        "conditionalCreate": False,
        "conditionalUpdate": support.conditional_update,
        "conditionalDelete": "not-supported",
    }
    if support.search_params:
        resource["searchParam"] = [
            {
                "name": p.name,
                "type": p.type,
                **({"documentation": p.documentation} if p.documentation else {}),
            }
            for p in support.search_params
        ]
    if support.operations:
        resource["operation"] = [
            {"name": name, "definition": canonical} for name, canonical in support.operations
        ]
    return {**resource, **support.extra}


def smart_configuration(settings: Settings, scopes_supported: Sequence[str]) -> dict[str, Any]:
    """`/.well-known/smart-configuration` (SMART App Launch v2, "Discovery").

    The identity provider is external and named by configuration; what it offers (launch
    flows, client authentication) is declared with it. What caretrail itself enforces, the
    scopes, is always declared. Locally `caretrail token` mints tokens and no endpoint is named.
    """
    document: dict[str, Any] = {"issuer": settings.jwt_issuer}
    if settings.jwks_url:
        document["jwks_uri"] = settings.jwks_url
    if settings.smart_authorization_endpoint:
        document["authorization_endpoint"] = settings.smart_authorization_endpoint
    if settings.smart_token_endpoint:
        document["token_endpoint"] = settings.smart_token_endpoint
        document["grant_types_supported"] = ["authorization_code", "client_credentials"]
        document["token_endpoint_auth_methods_supported"] = ["private_key_jwt"]
        document["code_challenge_methods_supported"] = ["S256"]
    document["scopes_supported"] = list(scopes_supported)
    document["response_types_supported"] = ["code"] if settings.smart_authorization_endpoint else []
    provider = settings.smart_capabilities if settings.smart_token_endpoint else ()
    document["capabilities"] = [*SMART_CAPABILITIES_ENFORCED, *provider]
    return document


def serve_discovery(
    blueprint: Any,
    *,
    name: str,
    resources: Sequence[ResourceSupport],
    documentation: Callable[[], str],
    scopes: Sequence[str],
    date: str,
) -> None:
    """Add what a FHIR base says of itself to its blueprint: `/metadata` (its
    CapabilityStatement) and `/.well-known/smart-configuration`, both public. `documentation`
    is asked on each request: a base may name others from its settings."""

    @blueprint.route("/metadata", methods=["GET"])
    @blueprint.doc(
        security=[],
        responses={"200": fhir_answer("the CapabilityStatement")},
        parameters=[FORMAT_PARAMETER],
    )
    def metadata() -> Response:
        """The CapabilityStatement of this FHIR base."""
        statement = capability_statement(
            resources,
            base_url=base_url(),
            settings=service_settings(),
            name=name,
            date=date,
            documentation=documentation(),
        )
        return fhir_response(statement)

    @blueprint.route("/.well-known/smart-configuration", methods=["GET"])
    @blueprint.doc(security=[], responses=SMART_ANSWER)
    def smart_discovery() -> Response:
        """SMART App Launch v2 discovery: the identity provider and what is enforced."""
        document = smart_configuration(service_settings(), scopes)
        return Response(orjson.dumps(document), mimetype="application/json")


def scopes_for(types: Iterable[str]) -> list[str]:
    """The scopes a base understands for `types`: wildcards, and per type read+search."""
    scopes = ["patient/*.cruds", "user/*.cruds", "system/*.cruds"]
    for resource_type in types:
        scopes += [f"patient/{resource_type}.rs", f"user/{resource_type}.rs"]
    return scopes
