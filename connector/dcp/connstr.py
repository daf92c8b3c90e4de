"""Parse a Couchbase connection string: `couchbase://h1[:port][,h2...][/bucket][?k=v&...]`.

Pure. `client.py` calls `parse_connection_string` once in `DcpClient.__init__`.
Schemes: `couchbase` (KV 11210, plain) and `couchbases` (KV 11207, TLS); no scheme means
`couchbase`. Hosts are separated by `,` or `;`; IPv6 literals are bracketed; a host may end in
`=mode` (`mcd`/`cccp`/`gcccp` bootstrap over KV; `http` names a management port, so the KV
default port is used instead). Option values are percent-decoded.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import unquote

from connector.errors import ConfigError

KV_PORT = 11210
KV_TLS_PORT = 11207
_HTTP_PORTS = {8091, 18091}


@dataclass(frozen=True, slots=True)
class HostPort:
    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


@dataclass(frozen=True, slots=True)
class ConnectionString:
    scheme: str
    tls: bool
    hosts: tuple[HostPort, ...]
    bucket: str | None = None
    options: dict[str, str] = field(default_factory=dict)


def _bad(text: str, reason: str) -> ConfigError:
    return ConfigError([("connection_string", f"{reason} in {text!r}")])


def _parse_host(text: str, item: str, default_port: int) -> HostPort | None:
    mode = None
    if "=" in item:
        item, mode = item.rsplit("=", 1)
        mode = mode.lower()
        if mode not in {"mcd", "cccp", "gcccp", "http"}:
            raise _bad(text, f"unknown bootstrap mode {mode!r}")
    item = item.strip()
    if not item:
        return None
    port: int | None = None
    if item.startswith("["):
        close = item.find("]")
        if close < 0:
            raise _bad(text, "unterminated IPv6 literal")
        host = item[1:close]
        rest = item[close + 1 :]
        if rest:
            if not rest.startswith(":"):
                raise _bad(text, f"unexpected {rest!r} after IPv6 literal")
            port_text = rest[1:]
        else:
            port_text = ""
    elif item.count(":") > 1:
        raise _bad(text, "IPv6 addresses must be written in brackets")
    else:
        host, _, port_text = item.partition(":")
    if port_text:
        if not port_text.isdigit() or not 0 < int(port_text) < 65536:
            raise _bad(text, f"bad port {port_text!r}")
        port = int(port_text)
    if not host:
        raise _bad(text, "empty host name")
    if port is None or mode == "http" or port in _HTTP_PORTS:
        port = default_port
    return HostPort(host, port)


def parse_connection_string(text: str) -> ConnectionString:
    """Parse; raises ConfigError naming the problem."""
    rest = text.strip()
    scheme = "couchbase"
    if "://" in rest:
        scheme, rest = rest.split("://", 1)
        scheme = scheme.lower()
    if scheme not in ("couchbase", "couchbases"):
        raise _bad(text, f"unsupported scheme {scheme!r} (use couchbase:// or couchbases://)")
    tls = scheme == "couchbases"
    default_port = KV_TLS_PORT if tls else KV_PORT
    rest, _, query = rest.partition("?")
    rest, _, bucket = rest.partition("/")
    options: dict[str, str] = {}
    if query:
        for pair in query.split("&"):
            if not pair:
                continue
            k, sep, v = pair.partition("=")
            if not k:
                raise _bad(text, f"option {pair!r} has no name")
            options[unquote(k)] = unquote(v) if sep else ""
    hosts = []
    for item in rest.replace(";", ",").split(","):
        hp = _parse_host(text, item, default_port)
        if hp is not None and hp not in hosts:
            hosts.append(hp)
    if not hosts:
        raise _bad(text, "no host")
    return ConnectionString(scheme, tls, tuple(hosts), unquote(bucket) or None, options)
