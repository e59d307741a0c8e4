"""Keep the Redis password out of everything printed: settings, their errors, logs, messages.

``redis_url_problem`` reads a URL as redis-py's ``parse_url`` and ``from_url`` do, so that a URL
redis-py would refuse or misread fails when the settings load, with a message that never holds
the password. ``masked_url`` and ``masked`` hide the password where the URL or a message about
it is shown.
"""

from __future__ import annotations

import functools
import inspect
import re
from collections.abc import Callable, Iterator, Mapping
from typing import Any, cast
from urllib.parse import SplitResult, unquote, unquote_plus, urlsplit

MASK = "***"
SCHEMES = ("redis://", "rediss://", "unix://")
# Query parameters whose values are secrets.
SECRET_PARAMETERS = frozenset({"password", "ssl_password"})
# Query parameters shown by masked_url when redis-py is not there to name all it knows: any
# other parameter might be the rest of a password cut at an unencoded '&', so it is hidden.
_SHOWN_PARAMETERS = frozenset(
    {
        "db",
        "username",
        "client_name",
        "protocol",
        "timeout",
        "socket_timeout",
        "socket_connect_timeout",
        "socket_keepalive",
        "socket_read_size",
        "retry_on_timeout",
        "health_check_interval",
        "max_connections",
        "ssl_cert_reqs",
        "ssl_ca_certs",
        "ssl_ca_path",
        "ssl_certfile",
        "ssl_keyfile",
        "ssl_check_hostname",
        "ssl_min_version",
    }
)
_ENCODE = "e.g. with urllib.parse.quote(password, safe='')"
_CUT = (
    f"holds an '@' after the host: the password before it must be percent-encoded ({_ENCODE}), "
    "as an unencoded '/' or '?' in it ends it early and the rest is read as the path or query "
    "(an '@' meant in a query value is written %40)"
)
_HASH = (
    f"holds a '#', which ends a URL (redis-py ignores all after it): the password in it must "
    f"be percent-encoded ({_ENCODE})"
)
# Where a URL that does not parse may be cut into pieces that each could be part of a password.
_DELIMITERS = re.compile(r"[/?#\[\]:@&=;\s]+")
# A password in the query of a URL that does not parse: up to its end, where the URL may
# have been cut at a '#' or '&' of it.
_QUERY_PASSWORD = re.compile(r"password=(?=(.*))", re.DOTALL)
# The scheme shown of a URL that does not parse: one of ours however mistyped, or another
# before "://"; not any word before a ':', which might be the password itself ("hunter2:x").
_SCHEME_PREFIX = re.compile(r"(?i:rediss?|unix):/{0,3}|[A-Za-z][A-Za-z0-9+.\-]*://")


def redis_url_problem(url: str) -> str | None:
    """Why redis-py would refuse or misread ``url`` (never quoting any of it), or None."""
    return _problem(url)


def masked_url(url: str) -> str:
    """``url`` with its password (userinfo and ``password=`` query values) as ``***``; all
    after the scheme is ``***`` when the URL does not parse as redis-py would read it."""
    if _problem(url) is not None:
        # Where the password ends is unknown: nothing after the scheme is shown.
        prefix = _SCHEME_PREFIX.match(url)
        scheme = prefix.group() if prefix else ""
        return scheme + MASK if len(scheme) < len(url) else scheme
    parts = urlsplit(url)
    userinfo, at, host = parts.netloc.rpartition("@")
    user, colon, password = userinfo.partition(":")
    netloc = f"{user}{colon}{MASK if password else ''}{at}{host}"
    known = _known_parameters(parts.scheme)
    shown = _SHOWN_PARAMETERS if known is None else known - SECRET_PARAMETERS
    items = []
    for item in parts.query.split("&"):
        raw_name, equals, value = item.partition("=")
        name = unquote_plus(raw_name)
        if not item or (name in shown and equals):
            items.append(item)
        elif name in SECRET_PARAMETERS:
            items.append(f"{raw_name}={MASK}" if value else item)
        else:
            items.append(MASK)
    # Put together by hand: urllib's geturl() drops the empty host of unix:///path.
    query = "?" + "&".join(items) if "?" in url else ""
    return f"{parts.scheme}://{netloc}{parts.path}{query}"


def masked(text: str, url: str) -> str:
    """``text`` (a message from redis-py, say) with every form of ``url``'s password in it
    replaced by ``***``: as written in the URL and percent-decoded. For a URL redis-py would
    refuse, where the password ends is unknown: every piece of it after the scheme is."""
    secrets = {s for s in _secrets(url) if s}
    if not secrets:
        return text
    # Longest first, so that a password holding another candidate is replaced whole.
    pattern = re.compile("|".join(re.escape(s) for s in sorted(secrets, key=len, reverse=True)))
    # Replacing may join the text around a password into it again ("ab" in "aabb"): repeat,
    # while a pass shortens the text (a password of 3 characters or fewer may not, and would
    # be replaced forever).
    while True:
        replaced = pattern.sub(MASK, text)
        if replaced == text or len(replaced) >= len(text):
            return replaced
        text = replaced


def _secrets(url: str) -> Iterator[str]:
    """Every text that could be (part of) the password of ``url``, raw and decoded."""
    if _problem(url) is not None:
        # Where the password ends is unknown: all after the scheme, and every piece of it
        # longer than a character, may be secret.
        prefix = _SCHEME_PREFIX.match(url)
        tail = url[prefix.end() :] if prefix else url
        userinfo = tail.rpartition("@")[0]
        guesses = [tail, userinfo, userinfo.partition(":")[2], *_DELIMITERS.split(tail)]
        for found in _QUERY_PASSWORD.finditer(tail):
            # Up to each '&' in turn: any of them may be where the password ends.
            pieces = found.group(1).split("&")
            guesses += ["&".join(pieces[:end]) for end in range(1, len(pieces) + 1)]
        for piece in guesses:
            if len(piece) > 1:
                yield from _decodings(piece)
        return
    parts = urlsplit(url)
    password = parts.netloc.rpartition("@")[0].partition(":")[2]
    yield from _decodings(password)
    known = _known_parameters(parts.scheme) or _SHOWN_PARAMETERS
    for item in parts.query.split("&"):
        raw_name, _, value = item.partition("=")
        name = unquote_plus(raw_name)
        if name in SECRET_PARAMETERS:
            yield from _decodings(value)
        elif name not in known:
            # Perhaps the rest of a password holding an unencoded '&'.
            yield from _decodings(item)
            yield from _decodings(raw_name)
            yield from _decodings(value)


def _decodings(text: str) -> Iterator[str]:
    yield text
    yield unquote(text)
    yield unquote_plus(text)


def _problem(url: str) -> str | None:
    """What redis-py would refuse or misread in ``url``, without quoting any of it."""
    if not url.startswith(SCHEMES):
        lower = " (in lower case)" if url.lower().startswith(SCHEMES) else ""
        return f"must start with redis://, rediss:// or unix://{lower}"
    if any(c in url for c in "\t\r\n"):
        # urllib drops these before reading the URL: the password would silently lose them.
        return (
            "holds a tab or line break; if the password holds one, it must be percent-encoded "
            f"({_ENCODE})"
        )
    try:
        parts = urlsplit(url)
    except ValueError:
        # urllib's own message quotes the part it refuses, which may be the password.
        return (
            "does not parse as a URL: a '[' or ']' outside an IPv6 address, or a character not "
            f"allowed in a host; if the password holds one, it must be percent-encoded ({_ENCODE})"
        )
    if "#" in url:
        # redis-py ignores all after a '#': it can only be the password's, cut short.
        return _HASH
    if _cut_short(parts):
        return _CUT
    if parts.scheme == "unix":
        if parts.netloc and "@" not in parts.netloc:
            # unix://tmp/redis.sock: "tmp" is read as a host, ignored, and the path is wrong.
            return "a unix:// URL has no host: write unix:///path/to/socket"
        if not parts.path:
            return "needs the socket's path: unix:///path/to/socket"
    else:
        try:
            parts.port  # noqa: B018 -- read to make urllib check it, as redis-py does
        except ValueError:
            return (
                "its port must be a number from 0 to 65535 (a password goes before an '@', as "
                f"in {parts.scheme}://:password@host:6379/0)"
            )
        if not parts.hostname:
            # redis-py would go to localhost; and what looks like a port may be a password.
            return f"needs a host, as in {parts.scheme}://host:6379/0"
        db = unquote(parts.path).replace("/", "")
        if db and not _is_int(db, minimum=0):
            # redis-py ignores a path it cannot read as a number and uses database 0.
            return (
                f"the database after the host must be a number, as in {parts.scheme}://host:6379/0"
            )
    return _query_problem(parts)


def _cut_short(parts: SplitResult) -> bool:
    """Whether an '@' after the host shows that the userinfo ended early, at a '/' or '?' of
    the password, so that the rest of it is read as the path or query."""
    names = [item.partition("=")[0] for item in parts.query.split("&")]
    in_names = any("@" in name for name in names)
    if parts.scheme == "unix":
        # A socket's path, or a query value, may hold an '@': suspect only a host-like text
        # without one (unix://:pass/word@/path), or a path that starts again after an '@'
        # (unix://:pa@ss/word@/path).
        if not parts.netloc:
            return False
        after = "@" in parts.path or in_names
        return ("@" not in parts.netloc and after) or "@/" in parts.path
    # The path is the database; a query value may hold an '@' (username=a@b) only when the
    # userinfo is whole.
    return "@" in parts.path or in_names or ("@" not in parts.netloc and "@" in parts.query)


def _query_problem(parts: SplitResult) -> str | None:
    """What redis-py would refuse or misread in the query: an unknown parameter (a misspelt
    name, or the rest of a password cut at an '&'), a value it cannot convert, a password it
    would change. Names only the parameters it knows."""
    if not parts.query:
        return None
    known = _known_parameters(parts.scheme)
    parsers = _value_parsers()
    items = parts.query.split("&")
    for number, item in enumerate(items, start=1):
        if not item:
            continue
        raw_name, _, raw_value = item.partition("=")
        name, value = unquote_plus(raw_name), unquote_plus(raw_value)
        if known is not None and name not in known:
            return (
                f"the query parameter number {number} is not one redis-py takes in a "
                f"{parts.scheme}:// URL: a misspelt name, or the rest of a password cut at an "
                f"unencoded '&'; a password must be percent-encoded ({_ENCODE})"
            )
        if name in SECRET_PARAMETERS:
            if "+" in raw_value:
                return (
                    f"the {name} in its query holds a '+', which a query reads as a space: "
                    f"it must be percent-encoded ({_ENCODE})"
                )
            if number < len(items) and not items[number]:
                # "password=pw&&db=0" or "password=pw&": an '&' of the password, dropped.
                return (
                    f"an empty query parameter follows the {name}: if it holds an '&', it must "
                    f"be percent-encoded ({_ENCODE})"
                )
        parser = parsers.get(name)
        if parser is not None and value:
            try:
                parser(value)
            except (TypeError, ValueError):
                return f"the value of its query parameter {name!r} is not valid"
    return None


def _is_int(text: str, minimum: int) -> bool:
    try:
        return int(text) >= minimum
    except ValueError:
        return False


@functools.cache
def _value_parsers() -> Mapping[str, Callable[[str], Any]]:
    """redis-py's converters of query values, by parameter; none when redis is missing."""
    try:
        from redis.connection import URL_QUERY_ARGUMENT_PARSERS
    except ImportError:
        return {}
    # Typed as dict[str, object] by redis-py: each value is a function of the text.
    return cast(Mapping[str, Callable[[str], Any]], URL_QUERY_ARGUMENT_PARSERS)


@functools.cache
def _known_parameters(scheme: str) -> frozenset[str] | None:
    """The query parameters redis-py takes for ``scheme`` (those of its connection pool and
    connection class: it passes any other to the connection, which refuses it at the first
    command), or None when redis is missing."""
    try:
        from redis import connection
    except ImportError:
        return None
    connection_class = {
        "redis": connection.Connection,
        "rediss": connection.SSLConnection,
        "unix": connection.UnixDomainSocketConnection,
    }.get(scheme)
    if connection_class is None:
        return None
    names: set[str] = set()
    for cls in (connection.ConnectionPool, *connection_class.__mro__):
        names |= _init_parameters(cls)
    return frozenset(names)


def _init_parameters(cls: type) -> set[str]:
    init = vars(cls).get("__init__")
    if init is None:
        return set()
    kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    parameters = inspect.signature(init).parameters.values()
    return {p.name for p in parameters if p.kind in kinds and p.name != "self"}
