"""HTTP(S) sources: GET with a timeout, a size limit, a content-type check and retries.

Runs on the encode thread (stdlib urllib, no extra dependency). What is retried: connection
failures, timeouts, 408, 429 and 5xx answers, with short exponential backoff and full jitter.
What is not: 404/410 (`not_found`), other 4xx (`http_status`), a wrong content type
(`bad_content_type`), a body over the limit (`too_large`). Redirects are followed (at most 5)
to http and https URLs only. Proxies come from the usual environment variables.
"""

from __future__ import annotations

import fnmatch
import http.client
import random
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from typing import Any

from connector.batching import backoff_delays
from connector.errors import SourceError

USER_AGENT = "cbembed/0.1"
_RETRY_STATUS = {408, 429, 500, 502, 503, 504}
_CHUNK = 64 * 1024


class _HttpOnlyRedirects(urllib.request.HTTPRedirectHandler):
    max_redirections = 5

    def redirect_request(
        self, req: Any, fp: Any, code: int, msg: str, headers: Any, newurl: str
    ) -> Any:
        if not newurl.lower().startswith(("http://", "https://")):
            raise SourceError(f"redirected to {newurl!r}: only http and https are followed",
                              kind="unsupported")
        return super().redirect_request(req, fp, code, msg, headers, newurl)


_opener = urllib.request.build_opener(_HttpOnlyRedirects())


def content_type_allowed(content_type: str, allowed: Sequence[str]) -> bool:
    """`image/png` against patterns like `image/*`; parameters (`; charset=`) are ignored."""
    base = content_type.split(";", 1)[0].strip().lower()
    return any(fnmatch.fnmatchcase(base, pat.strip().lower()) for pat in allowed)


def fetch(
    url: str, *, timeout_s: float, max_bytes: int, retries: int, allowed: Sequence[str],
    sleep: Any = time.sleep,
) -> bytes:
    """The body of `url`, or SourceError with a kind and a message naming the URL."""
    delays = backoff_delays(retries, base_s=0.2, cap_s=2.0)
    last: SourceError | None = None
    for attempt in range(retries + 1):
        if attempt:
            sleep(random.uniform(0, delays[attempt - 1]))
        try:
            return _get_once(url, timeout_s, max_bytes, allowed)
        except _Retriable as e:
            last = SourceError(f"{url}: unreachable after {attempt + 1} attempt(s): {e}",
                               kind="unreachable")
    assert last is not None
    raise last


class _Retriable(Exception):
    pass


def _get_once(url: str, timeout_s: float, max_bytes: int, allowed: Sequence[str]) -> bytes:
    req = urllib.request.Request(url, headers={
        "User-Agent": USER_AGENT, "Accept": ", ".join(allowed) or "*/*",
    })
    try:
        with _opener.open(req, timeout=timeout_s) as resp:
            ctype = resp.headers.get("Content-Type") or "application/octet-stream"
            if not content_type_allowed(ctype, allowed):
                raise SourceError(
                    f"{url}: content type {ctype!r} is not accepted (allowed: "
                    f"{', '.join(allowed)})",
                    kind="bad_content_type",
                )
            length = resp.headers.get("Content-Length")
            if length and length.isdigit() and int(length) > max_bytes:
                raise SourceError(
                    f"{url}: {length} bytes announced, over the limit of {max_bytes}",
                    kind="too_large",
                )
            chunks: list[bytes] = []
            got = 0
            while True:
                chunk = resp.read(min(_CHUNK, max_bytes + 1 - got))
                if not chunk:
                    break
                chunks.append(chunk)
                got += len(chunk)
                if got > max_bytes:
                    raise SourceError(f"{url}: body over the limit of {max_bytes} bytes",
                                      kind="too_large")
            return b"".join(chunks)
    except urllib.error.HTTPError as e:
        e.close()
        if e.code in _RETRY_STATUS:
            raise _Retriable(f"HTTP {e.code} {e.reason}") from None
        if 300 <= e.code < 400:  # urllib refused to follow it (another scheme, a loop)
            raise SourceError(f"{url}: redirect not followed ({e.reason})",
                              kind="unsupported") from None
        if e.code in (404, 410):
            raise SourceError(f"{url}: HTTP {e.code} {e.reason}", kind="not_found") from None
        raise SourceError(f"{url}: HTTP {e.code} {e.reason}", kind="http_status") from None
    except urllib.error.URLError as e:
        if isinstance(e.reason, SourceError):
            raise e.reason from None
        raise _Retriable(str(e.reason)) from None
    except TimeoutError as e:
        raise _Retriable(f"timed out after {timeout_s:g} s ({e})") from None
    except (OSError, http.client.HTTPException) as e:
        raise _Retriable(f"{type(e).__name__}: {e}") from None
