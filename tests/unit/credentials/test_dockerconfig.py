"""Pull secrets are read as the kubelet reads them, within bounds; errors never echo a secret.

Rules from kubernetes pkg/credentialprovider/config.go (``DockerConfigEntry``,
``decodeDockerConfigFieldAuth``) and secrets/secrets.go (which Secret types
and data keys count).
"""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from webhook.credentials.dockerconfig import (
    DOCKERCFG,
    DOCKERCONFIGJSON,
    MAX_CONTENT_BYTES,
    MAX_ENTRIES,
    MAX_KEY_CHARS,
    DockerConfigEntry,
    DockerConfigError,
    from_secret,
    parse_dockercfg,
    parse_dockerconfigjson,
    shown_key,
)

SECRET = "Pa55-w0rd:with:colons"
SOURCE = "secret team-a/regcred"


def _b64(text: str, *, pad: bool = True) -> str:
    encoded = base64.b64encode(text.encode()).decode()
    return encoded if pad else encoded.rstrip("=")


def _auths(entries: dict[str, Any]) -> str:
    return json.dumps({"auths": entries})


def _one(document: str) -> DockerConfigEntry:
    (entry,) = parse_dockerconfigjson(document, source=SOURCE).entries
    return entry


@pytest.mark.parametrize(
    ("entry", "username", "password"),
    [
        # auth is base64 of user:password.
        ({"auth": _b64(f"robot:{SECRET}")}, "robot", SECRET),
        # auth wins over username/password (config.go UnmarshalJSON).
        ({"auth": _b64("robot:right"), "username": "u", "password": "wrong"}, "robot", "right"),
        # Split at the first ':' only (strings.SplitN(..., 2)): the password keeps its colons.
        ({"auth": _b64("robot:a:b:c")}, "robot", "a:b:c"),
        # Unpadded base64 (RawStdEncoding) is read as well as padded.
        ({"auth": _b64("robot:pw1", pad=False)}, "robot", "pw1"),
        # Go's base64 decoder skips line breaks, as a wrapped auth has.
        (
            {"auth": _b64(f"robot:{SECRET}")[:8] + "\n" + _b64(f"robot:{SECRET}")[8:]},
            "robot",
            SECRET,
        ),
        # An empty auth falls back to username/password (len(tmp.Auth) == 0).
        ({"auth": "", "username": "u", "password": "p"}, "u", "p"),
        ({"username": "u", "password": "p", "email": "u@example.com"}, "u", "p"),
        # Go's encoding/json matches field names case-insensitively.
        ({"Username": "u", "PASSWORD": "p"}, "u", "p"),
        ({"AUTH": _b64("robot:pw")}, "robot", "pw"),
        # ... and the last of two spellings wins.
        ({"username": "first", "Username": "last", "password": "p"}, "last", "p"),
        # null leaves a Go string empty: not an error.
        ({"username": "u", "password": "p", "email": None, "auth": None}, "u", "p"),
        # An empty user name is what the kubelet reads too.
        ({"auth": _b64(":token-only")}, "", "token-only"),
    ],
)
def test_an_entry_reads_as_the_kubelet_reads_it(
    entry: dict[str, Any], username: str, password: str
) -> None:
    read = _one(_auths({"quay.io": entry}))
    assert (read.key, read.username, read.password) == ("quay.io", username, password)


def test_top_level_auths_is_matched_case_insensitively() -> None:
    config = parse_dockerconfigjson(
        json.dumps({"Auths": {"q.io": {"auth": _b64("a:b")}}}), source=SOURCE
    )
    assert [entry.key for entry in config.entries] == ["q.io"]


def test_keys_stay_as_written_in_document_order_and_a_repeated_key_keeps_the_last() -> None:
    old, team, new = _b64("old:1"), _b64("team:2"), _b64("new:3")
    document = (
        f'{{"auths": {{"https://index.docker.io/v1/": {{"auth": "{old}"}}, "quay.io/team": '
        f'{{"auth": "{team}"}}, "https://index.docker.io/v1/": {{"auth": "{new}"}}}}}}'
    )
    config = parse_dockerconfigjson(document, source=SOURCE)
    assert [(e.key, e.username) for e in config.entries] == [
        ("https://index.docker.io/v1/", "new"),
        ("quay.io/team", "team"),
    ]
    assert config.source == SOURCE


@pytest.mark.parametrize("token", ["identitytoken", "registrytoken", "IdentityToken"])
def test_identity_and_registry_tokens_are_not_used_as_the_kubelet_does_not(token: str) -> None:
    # DockerConfigEntry has Username, Password, Email and Auth only: a node never pulls
    # with these tokens, so trustgate must not authenticate with them either.
    config = parse_dockerconfigjson(_auths({"acr.io": {token: SECRET}}), source=SOURCE)
    assert config.entries == ()
    (skipped,) = config.skipped
    assert skipped.key == "acr.io"
    assert "kubelet ignores them" in skipped.reason
    assert SECRET not in repr(config)


def test_a_token_beside_a_password_leaves_the_password_in_use() -> None:
    entry = _one(_auths({"acr.io": {"username": "u", "password": "p", "identitytoken": "t"}}))
    assert (entry.username, entry.password) == ("u", "p")


def test_null_and_empty_entries_are_skipped_not_refused() -> None:
    config = parse_dockerconfigjson(_auths({"a.io": None, "b.io": {}}), source=SOURCE)
    assert config.entries == ()
    assert [s.key for s in config.skipped] == ["a.io", "b.io"]


def test_the_legacy_dockercfg_is_the_bare_map() -> None:
    config = parse_dockercfg(json.dumps({"quay.io": {"auth": _b64("u:p")}}), source=SOURCE)
    assert [(e.key, e.username, e.password) for e in config.entries] == [("quay.io", "u", "p")]


@pytest.mark.parametrize(
    ("secret_type", "data_key", "content"),
    [
        (DOCKERCONFIGJSON, ".dockerconfigjson", _auths({"q.io": {"auth": _b64("u:p")}})),
        (DOCKERCFG, ".dockercfg", json.dumps({"q.io": {"auth": _b64("u:p")}})),
    ],
)
def test_a_secret_is_read_from_its_types_data_key(
    secret_type: str, data_key: str, content: str
) -> None:
    config = from_secret(secret_type, {data_key: _b64(content)}, source=SOURCE)
    assert config is not None
    assert [(e.username, e.password) for e in config.entries] == [("u", "p")]


def test_a_secret_of_another_type_is_passed_over() -> None:
    assert from_secret("Opaque", {".dockerconfigjson": _b64("{}")}, source=SOURCE) is None
    # The wrong data key for the type: the kubelet reads only the type's own key.
    with pytest.raises(DockerConfigError, match=r"without \.dockercfg data"):
        from_secret(DOCKERCFG, {".dockerconfigjson": _b64("{}")}, source=SOURCE)


def test_secret_data_that_is_not_base64_is_refused() -> None:
    with pytest.raises(DockerConfigError, match="not base64") as caught:
        from_secret(DOCKERCONFIGJSON, {".dockerconfigjson": f"{SECRET}!!"}, source=SOURCE)
    assert SECRET not in str(caught.value)


# Each row is content the kubelet cannot read either (or past trustgate's bounds), with the
# words the refusal must say. SECRET is in every document and must be in no message.
REFUSED = [
    ("not base64 of username:password", _auths({"q.io": {"auth": f"{SECRET}%%"}})),
    ("not base64 of username:password", _auths({"q.io": {"auth": _b64("u:" + SECRET) + "="}})),
    ("not base64 of username:password", _auths({"q.io": {"auth": _b64("u:pw", pad=False) + "="}})),
    ("decodes to no ':'", _auths({"q.io": {"auth": _b64(SECRET.replace(":", ""))}})),
    (
        "not decode to UTF-8",
        _auths({"q.io": {"auth": base64.b64encode(b"u:\xff" + SECRET.encode()).decode()}}),
    ),
    ("username is not a string", _auths({"q.io": {"username": 7, "password": SECRET}})),
    ("auth is not a string", _auths({"q.io": {"auth": [SECRET]}})),
    ("is not an object", _auths({"q.io": SECRET})),
    ('has no "auths" object', json.dumps({"credsStore": SECRET})),
    ('has no "auths" object', json.dumps({"auths": [SECRET]})),
    ("is not a JSON object", json.dumps([SECRET])),
    ("is not valid JSON", '{"auths": {"q.io": {"password": "' + SECRET + '"'),
    (
        "nests too deeply",
        '{"auths": {"q.io": {"password": "' + SECRET + '", "x": ' + "[" * 5000 + "]" * 5000 + "}}}",
    ),
]


@pytest.mark.parametrize(("words", "document"), REFUSED)
def test_unreadable_content_is_refused_without_echoing_a_secret(words: str, document: str) -> None:
    with pytest.raises(DockerConfigError) as caught:
        parse_dockerconfigjson(document, source=SOURCE)
    message = str(caught.value)
    assert words in message
    assert message.startswith(SOURCE)
    assert SECRET not in message
    assert SECRET.split(":")[0] not in message
    assert _b64("u:" + SECRET)[:12] not in message


def test_a_huge_secret_is_refused_unread() -> None:
    filler = "x" * MAX_CONTENT_BYTES
    document = _auths({"q.io": {"auth": _b64("u:" + SECRET), "email": filler}})
    with pytest.raises(DockerConfigError, match="the limit is 262,144") as caught:
        parse_dockerconfigjson(document, source=SOURCE)
    assert SECRET not in str(caught.value)
    # Counted in bytes: multi-byte characters do not slip under the limit.
    wide = _auths({"q.io": {"username": "u", "password": "é" * (MAX_CONTENT_BYTES // 2)}})
    with pytest.raises(DockerConfigError, match="bytes of docker config"):
        parse_dockerconfigjson(wide, source=SOURCE)


def test_too_many_registry_keys_are_refused() -> None:
    entries = {f"r{i}.example.com": {"auth": _b64("u:p")} for i in range(MAX_ENTRIES + 1)}
    with pytest.raises(DockerConfigError, match=f"{MAX_ENTRIES + 1} registry keys; the limit"):
        parse_dockerconfigjson(_auths(entries), source=SOURCE)
    allowed = {f"r{i}.example.com": {"auth": _b64("u:p")} for i in range(MAX_ENTRIES)}
    assert len(parse_dockerconfigjson(_auths(allowed), source=SOURCE).entries) == MAX_ENTRIES


def test_a_key_past_the_length_limit_is_refused_and_shown_cut() -> None:
    key = "q.io/" + "a" * MAX_KEY_CHARS
    with pytest.raises(DockerConfigError, match="characters long; the limit is 1,024") as caught:
        parse_dockerconfigjson(_auths({key: {"auth": _b64("u:p")}}), source=SOURCE)
    assert len(str(caught.value)) < 300


def test_a_key_with_user_info_is_shown_without_it() -> None:
    key = f"https://robot:{SECRET}@quay.io/v1/"
    with pytest.raises(DockerConfigError) as caught:
        parse_dockerconfigjson(_auths({key: {"auth": "%%"}}), source=SOURCE)
    assert SECRET not in str(caught.value)
    assert "(user info hidden)@quay.io/v1/" in str(caught.value)
    assert shown_key("quay.io") == '"quay.io"'


def test_an_entry_never_shows_its_password_in_repr() -> None:
    entry = _one(_auths({"quay.io": {"auth": _b64(f"robot:{SECRET}")}}))
    assert SECRET not in repr(entry)
    assert "robot" in repr(entry)
