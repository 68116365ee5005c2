"""Secrets never leave the process: one place that strips them from what monitor shows.

What is shown — metric labels, stored results, JSON output, logs, reports — may carry URLs
that a server or a user put a secret into: userinfo (`https://alice:s3cret@host/`), a token
in the query string (`?token=…`, a pre-signed `X-Amz-Signature=…`). Config refuses userinfo
where it can (secrets come from env or files instead), but a redirect or an exception text
can still bring one in, so every URL that is shown goes through `redact_url`, and every log
line through `redact_text`.
"""

from __future__ import annotations

import re
from urllib.parse import SplitResult, parse_qsl, quote, urlsplit, urlunsplit

REDACTED = "REDACTED"

# Query parameters whose values are credentials (case-insensitive, whole name): tokens, keys,
# passwords, signatures of pre-signed URLs (S3, GCS, Azure SAS), OAuth codes, session ids.
_SENSITIVE_PARAM = re.compile(
    r"(.*token.*|.*secret.*|.*passw(or)?d.*|pwd|pass|.*api[-_]?key.*|key|.*access[-_]?key.*|auth|authorization"
    r"|sig|signature|.*-signature|.*-credential|.*-security-token|code|.*session.*|sid|sas|credentials?)",
    re.IGNORECASE,
)
# A URL inside free text: scheme://… up to whitespace or a quote/bracket that ends it.
_URL_IN_TEXT = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>`]+")


def sensitive_param(name: str) -> bool:
    return bool(_SENSITIVE_PARAM.fullmatch(name))


def has_userinfo(url: str) -> bool:
    return "@" in urlsplit(url).netloc


def redact_url(url: str) -> str:
    """`url` with userinfo and credential-bearing query values replaced by REDACTED.

    A URL without either comes back unchanged (same string), so redacting is safe to apply to
    anything that might be a URL; one that does not parse is returned as redact_text sees it."""
    if "@" not in url and "?" not in url:
        return url  # the common case, without parsing
    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    netloc = parts.netloc
    if "@" in netloc:
        netloc = f"{REDACTED}@{netloc.rpartition('@')[2]}"
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        if any(sensitive_param(k) for k, _ in pairs):
            query = "&".join(
                f"{quote(k, safe='')}={REDACTED if sensitive_param(k) else quote(v, safe='')}" for k, v in pairs
            )
    if netloc == parts.netloc and query == parts.query:
        return url
    return urlunsplit(SplitResult(parts.scheme, netloc, parts.path, query, parts.fragment))


def redact_text(text: str) -> str:
    """Every URL found in `text` redacted (log messages, exception details)."""
    if "://" not in text:
        return text
    return _URL_IN_TEXT.sub(lambda m: redact_url(m.group(0)), text)
