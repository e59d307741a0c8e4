"""The Redis password in redis_url is never printed: not by repr(settings), not in a settings
error, not by the mycache command; and a password that needs percent-encoding is told so."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError
from redis import connection

from my_cache import CacheStor, Settings, SettingsError
from my_cache._secrets import masked, masked_url, redis_url_problem
from my_cache.settings import load_settings

PW = "S3cr3tPw"
# Pieces of the password a message must not hold either (urllib quotes what it cannot read).
PIECES = (PW, "S3cr", "3tPw")
ENCODE_ADVICE = "urllib.parse.quote(password, safe='')"


def parse_url(url: str) -> dict[str, Any]:
    """What redis-py reads from ``url``: the options it connects with."""
    options: dict[str, Any] = connection.parse_url(url)  # type: ignore[no-untyped-call]
    return options


# Every way a URL holds a password, and how it is shown.
GOOD = [
    ("redis://:S3cr3tPw@cache.example.com:6379/0", "redis://:***@cache.example.com:6379/0"),
    ("redis://app:S3cr3tPw@cache.example.com:6379/1", "redis://app:***@cache.example.com:6379/1"),
    (
        "redis://cache.example.com:6379/0?password=S3cr3tPw",
        "redis://cache.example.com:6379/0?password=***",
    ),
    (
        "redis://cache.example.com/0?username=app&password=S3cr3tPw&socket_timeout=3",
        "redis://cache.example.com/0?username=app&password=***&socket_timeout=3",
    ),
    ("rediss://:S3cr3tPw@cache.example.com:6380/0", "rediss://:***@cache.example.com:6380/0"),
    (
        "rediss://cache.example.com/0?ssl_cert_reqs=none&ssl_password=S3cr3tPw",
        "rediss://cache.example.com/0?ssl_cert_reqs=none&ssl_password=***",
    ),
    ("unix:///run/redis.sock?password=S3cr3tPw&db=2", "unix:///run/redis.sock?password=***&db=2"),
    ("unix://:S3cr3tPw@/run/redis.sock", "unix://:***@/run/redis.sock"),
    ("redis://[::1]:6379/0?password=S3cr3tPw", "redis://[::1]:6379/0?password=***"),
    # Percent-encoded, as it must be when it holds a reserved character: S3cr/3t#Pw.
    ("redis://app:S3cr%2F3t%23Pw@cache.example.com/0", "redis://app:***@cache.example.com/0"),
]
NO_PASSWORD = ["redis://127.0.0.1:6379/0", "redis://app@cache.example.com/3", "unix:///run/r.sock"]

# URLs refused at settings time (password S3cr3tPw somewhere in each), and what the error says.
BAD = [
    ("redis:/:S3cr3tPw@cache.example.com:6379/0", "must start with redis://"),
    ("REDIS://:S3cr3tPw@cache.example.com:6379/0", "in lower case"),
    ("http://:S3cr3tPw@cache.example.com/0", "must start with redis://"),
    ("S3cr3tPw", "must start with redis://"),
    ("redis://:S3cr#3tPw@cache.example.com:6379/0", "must be percent-encoded"),
    ("redis://:S3cr/3tPw@cache.example.com:6379/0", "must be percent-encoded"),
    ("redis://:S3cr?3tPw@cache.example.com:6379/0", "must be percent-encoded"),
    ("redis://app:1234/3tPw@cache.example.com/0", "must be percent-encoded"),
    ("redis://app:1234?3tPw@cache.example.com/0", "must be percent-encoded"),
    ("redis://:S3cr[3tPw@cache.example.com/0", "must be percent-encoded"),
    ("redis://:S3cr\n3tPw@cache.example.com/0", "must be percent-encoded"),
    ("unix://:S3cr/3tPw@/run/redis.sock", "must be percent-encoded"),
    ("redis://cache.example.com/0?password=S3cr#3tPw", "must be percent-encoded"),
    ("redis://cache.example.com/0?password=S3cr&3tPw", "must be percent-encoded"),
    ("redis://cache.example.com/0?password=S3cr+3tPw", "must be percent-encoded"),
    ("redis://app:S3cr3tPw", "port must be a number"),  # no '@host'
    ("redis://:S3cr3tPw@cache.example.com:63a9/0", "port must be a number"),
    ("redis://:S3cr3tPw@:6379/0", "needs a host"),
    ("redis://:S3cr3tPw@cache.example.com/zero", "database after the host must be a number"),
    ("redis://:S3cr3tPw@cache.example.com/0?db=x", "query parameter 'db' is not valid"),
    ("redis://:S3cr3tPw@cache.example.com/0?timeout=1", "not one redis-py takes"),
    ("unix://:S3cr3tPw", "no host"),
    ("unix://S3cr3tPw/run/redis.sock", "no host"),
]


def assert_hidden(text: str) -> None:
    for piece in PIECES:
        assert piece not in text


@pytest.mark.parametrize(("url", "shown"), GOOD)
def test_repr_and_str_of_settings_mask_the_password(url: str, shown: str) -> None:
    loaded = load_settings(redis_url=url)
    assert loaded.redis_url == url  # the value itself is untouched
    for text in (repr(loaded), str(loaded), repr(Settings(redis_url=url))):
        assert_hidden(text)
        assert f"redis_url={shown!r}" in text
    assert "S3cr/3t#Pw" not in repr(loaded)


@pytest.mark.parametrize(("url", "shown"), GOOD)
def test_masked_url_hides_every_form_of_password(url: str, shown: str) -> None:
    assert redis_url_problem(url) is None
    assert masked_url(url) == shown
    # And redis-py reads the password that was meant.
    meant = "S3cr/3t#Pw" if "%2F" in url else PW
    key = "ssl_password" if "ssl_password" in url else "password"
    assert parse_url(url)[key] == meant


@pytest.mark.parametrize("url", NO_PASSWORD)
def test_a_url_without_password_is_shown_as_is(url: str) -> None:
    assert masked_url(url) == url
    assert masked(f"cannot reach {url}", url) == f"cannot reach {url}"


@pytest.mark.parametrize(("url", "says"), BAD)
def test_a_bad_url_is_shown_as_its_scheme_only(url: str, says: str) -> None:
    problem = redis_url_problem(url)
    assert problem is not None and says in problem
    assert_hidden(problem)
    shown = masked_url(url)
    assert_hidden(shown)
    assert shown.endswith("***")
    assert shown in ("***", "redis:/***", "REDIS://***", "http://***", "redis://***", "unix://***")


@pytest.mark.parametrize(("url", "says"), BAD)
def test_settings_error_from_the_environment_hides_the_password(
    url: str, says: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MYCACHE_REDIS_URL", url)
    with pytest.raises(SettingsError) as raised:
        CacheStor()
    message = str(raised.value)
    assert_hidden(message)
    assert "'redis_url'" in message and says in message
    assert "environment variable MYCACHE_REDIS_URL" in message


@pytest.mark.parametrize(("url", "says"), BAD)
def test_settings_error_from_the_file_hides_the_password(
    url: str, says: str, tmp_path: Path
) -> None:
    # A TOML basic string takes JSON's escapes (the line break of one URL).
    (tmp_path / "mycache.toml").write_text(f"redis_url = {json.dumps(url)}\n")
    with pytest.raises(SettingsError) as raised:
        load_settings()
    message = str(raised.value)
    assert_hidden(message)
    assert "'redis_url'" in message and says in message
    assert "file mycache.toml" in message


@pytest.mark.parametrize(("url", "says"), BAD)
def test_validation_error_and_argument_error_hide_the_password(url: str, says: str) -> None:
    with pytest.raises(ValidationError) as raw:
        Settings(redis_url=url)
    assert_hidden(str(raw.value))
    assert_hidden(repr(raw.value))
    with pytest.raises(SettingsError) as raised:
        load_settings(redis_url=url)
    assert_hidden(str(raised.value))
    assert "the CacheStor argument" in str(raised.value)


@pytest.mark.parametrize("reserved", ["#", "/", "?"])
def test_a_password_to_percent_encode_is_told_so(reserved: str) -> None:
    password = f"S3cr{reserved}3tPw"
    url = f"redis://app:{password}@cache.example.com:6379/0"
    with pytest.raises(SettingsError) as raised:
        load_settings(redis_url=url)
    message = str(raised.value)
    assert "must be percent-encoded" in message and ENCODE_ADVICE in message
    assert_hidden(message)
    assert "'redis://***'" in message
    # Done as told, the URL loads, and redis-py reads the password.
    encoded = f"redis://app:{quote(password, safe='')}@cache.example.com:6379/0"
    assert load_settings(redis_url=encoded).redis_url == encoded
    assert parse_url(encoded)["password"] == password


def test_redis_py_itself_would_print_the_password() -> None:
    """Why URLs are checked at settings time: redis-py's own error quotes the password."""
    url = "redis://:S3cr3tPw#1@cache.example.com:6379/0"
    with pytest.raises(ValueError, match=PW) as raised:
        parse_url(url)
    assert_hidden(masked(str(raised.value), url))
    with pytest.raises(SettingsError, match="must be percent-encoded") as ours:
        load_settings(redis_url=url)
    assert_hidden(str(ours.value))


def test_a_misspelt_key_or_a_table_hides_the_password(tmp_path: Path) -> None:
    config = tmp_path / "mycache.toml"
    config.write_text(f'redis_ulr = "redis://:{PW}@cache.example.com/0"\n')
    with pytest.raises(SettingsError, match=r"'redis_ulr' from file mycache\.toml") as raised:
        load_settings()
    assert_hidden(str(raised.value))
    config.write_text(f'redis_url = ["redis://:{PW}@cache.example.com/0"]\n')
    with pytest.raises(SettingsError, match=r"'redis_url' = <list>") as raised:
        load_settings()
    assert_hidden(str(raised.value))


@pytest.mark.parametrize(("url", "shown"), GOOD)
def test_masked_hides_the_password_in_any_text(url: str, shown: str) -> None:
    password = "S3cr/3t#Pw" if "%2F" in url else PW
    text = (
        f"AUTH {password} failed; sent {quote(password, safe='')} "
        f"and {quote(password, safe='').replace('%20', '+')}; url {url}"
    )
    hidden = masked(text, url)
    assert_hidden(hidden)
    assert password not in hidden
    assert hidden == f"AUTH *** failed; sent *** and ***; url {shown}"


def test_masked_hides_the_pieces_of_a_url_that_does_not_parse() -> None:
    url = "redis://app:S3cr/3t?Pw@cache.example.com:6379/0"
    text = "Port could not be cast to integer value as 'S3cr'; rest '3t?Pw@cache'"
    hidden = masked(text, url)
    assert "S3cr" not in hidden and "3t?Pw" not in hidden and "Pw@" not in hidden


def test_masked_with_an_empty_password_changes_nothing() -> None:
    url = "redis://app:@cache.example.com/0"
    assert masked("app failed at cache.example.com", url) == "app failed at cache.example.com"
    assert masked_url(url) == url


PASSWORDS = st.text(
    st.characters(exclude_categories=["Cs"]) | st.sampled_from("#/?@:[]%&=+ \t"), min_size=1
)


def check_masked(password: str, url: str, shown: str) -> None:
    assert redis_url_problem(url) is None
    assert masked_url(url) == shown
    text = f"error: {password!r} / {password} / {quote(password, safe='')} / {url}"
    hidden = masked(text, url)
    # (Unless the password happens to be part of what is shown: "6380", "word".)
    if len(password) >= 4 and password not in shown:
        assert password not in masked_url(url)
        assert password not in hidden
        assert quote(password, safe="") not in hidden


@settings(max_examples=200, deadline=None)
@given(PASSWORDS)
def test_any_percent_encoded_password_is_read_and_masked(password: str) -> None:
    encoded = quote(password, safe="")
    host = "cache.example.com:6380/0"
    in_userinfo = f"redis://app:{encoded}@{host}"
    check_masked(password, in_userinfo, f"redis://app:***@{host}")
    in_query = f"redis://{host}?password={encoded}&db=1"
    check_masked(password, in_query, f"redis://{host}?password=***&db=1")
    in_unix = f"unix:///run/redis.sock?db=1&password={encoded}"
    check_masked(password, in_unix, "unix:///run/redis.sock?db=1&password=***")
    for url in (in_userinfo, in_query, in_unix):
        assert parse_url(url)["password"] == password
    if len(password) >= 4:
        shown = repr(load_settings(redis_url=in_userinfo))
        assume(password not in repr(load_settings()))  # "None", "2.0": not the password's
        assert password not in shown


@settings(max_examples=300, deadline=None)
@given(PASSWORDS)
def test_an_unencoded_password_is_read_as_meant_or_refused(password: str) -> None:
    """Written as is, a password is either read whole by redis-py, or the URL is refused;
    either way it is never shown."""
    url = f"redis://app:{password}@cache.example.com:6380/0"
    problem = redis_url_problem(url)
    if problem is None:
        parsed = parse_url(url)
        assert (parsed["host"], parsed["port"], parsed.get("db")) == ("cache.example.com", 6380, 0)
        assert parsed["username"] == "app"
        assert masked_url(url) == "redis://app:***@cache.example.com:6380/0"
    else:
        assert masked_url(url) == "redis://***"
        if len(password) >= 4:
            assert password not in problem
    if len(password) >= 4 and password not in "redis://app:***@cache.example.com:6380/0":
        assert password not in masked(f"failed: {password}", url)


@pytest.mark.parametrize(
    "url",
    [
        "redis://:S3cr/3tPw@cache.example.com:6379/0",
        "redis:/:S3cr3tPw@cache.example.com:6379/0",
        "redis://cache.example.com/0?password=S3cr#3tPw",
        "rediss://app:S3cr3tPw",
    ],
)
def test_the_command_reports_a_bad_url_in_one_line_without_the_password(
    url: str, tmp_path: Path
) -> None:
    config = tmp_path / "settings.toml"
    config.write_text(f'type_storage = "in_redis"\nredis_url = {json.dumps(url)}\n')
    result = subprocess.run(
        [sys.executable, "-m", "my_cache", "ls", "--config", str(config)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
        env=dict(os.environ),  # without MYCACHE_* variables: the fixture isolated took them
    )
    assert result.returncode == 1
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("Error: invalid my_cache settings: setting 'redis_url'")
    assert f"file {config}" in lines[0]
    assert_hidden(result.stderr)
