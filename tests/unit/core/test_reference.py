"""Table tests for the image reference grammar, plus a round-trip property.

Allowlists match ``ImageRef.repository``, so every case that could smuggle a
registry past a glob (look-alike hosts, hosts hidden in paths, case tricks,
control characters) is pinned to its exact parse or its exact refusal.
"""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from webhook.core.errors import ImageReferenceError
from webhook.core.reference import ImageRef, parse_reference

HEX64 = "0123456789abcdef" * 4
HEX128 = HEX64 * 2
SHA256 = f"sha256:{HEX64}"
SHA512 = f"sha512:{HEX128}"
NGINX = "docker.io/library/nginx"

# (input, domain, path, tag, digest, canonical str())
VALID: list[tuple[str, str, str, str | None, str | None, str]] = [
    # Docker Hub normalisation
    ("nginx", "docker.io", "library/nginx", "latest", None, f"{NGINX}:latest"),
    ("library/nginx", "docker.io", "library/nginx", "latest", None, f"{NGINX}:latest"),
    ("acme/api", "docker.io", "acme/api", "latest", None, "docker.io/acme/api:latest"),
    ("docker.io/nginx", "docker.io", "library/nginx", "latest", None, f"{NGINX}:latest"),
    ("index.docker.io/nginx", "docker.io", "library/nginx", "latest", None, f"{NGINX}:latest"),
    (
        "registry-1.docker.io/library/nginx",
        "docker.io",
        "library/nginx",
        "latest",
        None,
        f"{NGINX}:latest",
    ),
    ("DOCKER.IO/nginx", "docker.io", "library/nginx", "latest", None, f"{NGINX}:latest"),
    ("index.docker.io/acme/api:v1", "docker.io", "acme/api", "v1", None, "docker.io/acme/api:v1"),
    ("docker.io/library/nginx:1.25", "docker.io", "library/nginx", "1.25", None, f"{NGINX}:1.25"),
    ("registry/x", "docker.io", "registry/x", "latest", None, "docker.io/registry/x:latest"),
    # a port makes it another registry, not an alias of Docker Hub
    ("docker.io:443/nginx", "docker.io:443", "nginx", "latest", None, "docker.io:443/nginx:latest"),
    # tags and digests
    (
        "nginx:1.25-alpine",
        "docker.io",
        "library/nginx",
        "1.25-alpine",
        None,
        f"{NGINX}:1.25-alpine",
    ),
    ("nginx@" + SHA256, "docker.io", "library/nginx", None, SHA256, f"{NGINX}@{SHA256}"),
    (
        "nginx:1.25@" + SHA256,
        "docker.io",
        "library/nginx",
        "1.25",
        SHA256,
        f"{NGINX}:1.25@{SHA256}",
    ),
    ("quay.io/a/b@" + SHA512, "quay.io", "a/b", None, SHA512, f"quay.io/a/b@{SHA512}"),
    ("x:_v", "docker.io", "library/x", "_v", None, "docker.io/library/x:_v"),
    ("x:V1.0_RC-2", "docker.io", "library/x", "V1.0_RC-2", None, "docker.io/library/x:V1.0_RC-2"),
    (
        "x:" + "t" * 128,
        "docker.io",
        "library/x",
        "t" * 128,
        None,
        "docker.io/library/x:" + "t" * 128,
    ),
    (
        "library/sha256:" + HEX64,
        "docker.io",
        "library/sha256",
        HEX64,
        None,
        f"docker.io/library/sha256:{HEX64}",
    ),
    # hosts that look like other hosts
    ("quay.io/acme/api:v1.2.3", "quay.io", "acme/api", "v1.2.3", None, "quay.io/acme/api:v1.2.3"),
    ("QUAY.IO/x", "quay.io", "x", "latest", None, "quay.io/x:latest"),
    ("Quay.Io/acme/api", "quay.io", "acme/api", "latest", None, "quay.io/acme/api:latest"),
    ("quay.io.evil.com/x", "quay.io.evil.com", "x", "latest", None, "quay.io.evil.com/x:latest"),
    ("evil.com/quay.io/x", "evil.com", "quay.io/x", "latest", None, "evil.com/quay.io/x:latest"),
    ("quay.io", "docker.io", "library/quay.io", "latest", None, "docker.io/library/quay.io:latest"),
    (
        "quay.io:443@" + SHA256,
        "docker.io",
        "library/quay.io",
        "443",
        SHA256,
        f"docker.io/library/quay.io:443@{SHA256}",
    ),
    (
        "quay.io:443/acme/api",
        "quay.io:443",
        "acme/api",
        "latest",
        None,
        "quay.io:443/acme/api:latest",
    ),
    (
        "xn--80ak6aa92e.com/x",
        "xn--80ak6aa92e.com",
        "x",
        "latest",
        None,
        "xn--80ak6aa92e.com/x:latest",
    ),
    # localhost, IPv4 and IPv6
    (
        "localhost",
        "docker.io",
        "library/localhost",
        "latest",
        None,
        "docker.io/library/localhost:latest",
    ),
    (
        "localhost:5000",
        "docker.io",
        "library/localhost",
        "5000",
        None,
        "docker.io/library/localhost:5000",
    ),
    ("localhost/x", "localhost", "x", "latest", None, "localhost/x:latest"),
    ("LOCALHOST/x", "localhost", "x", "latest", None, "localhost/x:latest"),
    ("localhost:5000/x", "localhost:5000", "x", "latest", None, "localhost:5000/x:latest"),
    ("Foo:5000/x", "foo:5000", "x", "latest", None, "foo:5000/x:latest"),
    ("127.0.0.1:5000/x", "127.0.0.1:5000", "x", "latest", None, "127.0.0.1:5000/x:latest"),
    ("10.0.0.1/team/app:v2", "10.0.0.1", "team/app", "v2", None, "10.0.0.1/team/app:v2"),
    ("[::1]:5000/x", "[::1]:5000", "x", "latest", None, "[::1]:5000/x:latest"),
    ("[::1]/x", "[::1]", "x", "latest", None, "[::1]/x:latest"),
    (
        "[2001:DB8::1]:443/acme/api",
        "[2001:db8::1]:443",
        "acme/api",
        "latest",
        None,
        "[2001:db8::1]:443/acme/api:latest",
    ),
    ("example.com:1/x", "example.com:1", "x", "latest", None, "example.com:1/x:latest"),
    # deep paths and separators
    (
        "registry.example.com:65535/a/b/c/d/e:t",
        "registry.example.com:65535",
        "a/b/c/d/e",
        "t",
        None,
        "registry.example.com:65535/a/b/c/d/e:t",
    ),
    (
        "my-reg.example/x__y/a.b/c-d/e---f:1",
        "my-reg.example",
        "x__y/a.b/c-d/e---f",
        "1",
        None,
        "my-reg.example/x__y/a.b/c-d/e---f:1",
    ),
    ("k8s.gcr.io/pause:3.9", "k8s.gcr.io", "pause", "3.9", None, "k8s.gcr.io/pause:3.9"),
    # exactly at the 255-character name limit
    (
        "quay.io/" + "a" * 247,
        "quay.io",
        "a" * 247,
        "latest",
        None,
        "quay.io/" + "a" * 247 + ":latest",
    ),
]

# (input, pattern the message must match)
INVALID: list[tuple[str, str]] = [
    ("", r"image reference is empty$"),
    # whitespace and control characters, including newline injection
    (" nginx", r"whitespace or control character ' ' at offset 0"),
    ("nginx ", r"whitespace or control character ' ' at offset 5"),
    ("ngi nx", r"whitespace or control character ' ' at offset 3"),
    ("\t", r"whitespace or control character '\\t' at offset 0"),
    ("nginx\n", r"whitespace or control character '\\n' at offset 5"),
    ("quay.io/x\nwarning: admitted", r"control character '\\n' at offset 9"),
    ("quay.io/x\r", r"control character '\\r'"),
    ("quay.io/x\x00", r"control character '\\x00'"),
    ("quay.io/x\x1b[31m", r"control character '\\x1b'"),
    ("quay.io/acme/api\t:v1", r"control character '\\t'"),
    # unicode look-alikes
    ("qu\u0430y.io/x", r"non-ASCII character '\\u0430' \(CYRILLIC SMALL LETTER A\) at offset 2"),
    ("quay.io\uff0fx", r"'\\uff0f' \(FULLWIDTH SOLIDUS\).*look-alike"),
    ("quay.io\uff1a443/x", r"'\\uff1a' \(FULLWIDTH COLON\)"),
    ("\uff51uay.io/x", r"'\\uff51' \(FULLWIDTH LATIN SMALL LETTER Q\)"),
    ("quay.io/x\u200b", r"'\\u200b' \(ZERO WIDTH SPACE\)"),
    # hosts
    ("quay.io./x", r'registry host "quay.io." must not end with \'.\''),
    ("quay..io/x", r'registry host "quay..io" is invalid'),
    (".quay.io/x", r'registry host ".quay.io" is invalid'),
    ("-quay.io/x", r'registry host "-quay.io" is invalid'),
    ("quay-.io/x", r'registry host "quay-.io" is invalid'),
    ("quay_io.com/x", r'registry host "quay_io.com" is invalid'),
    ("Acme/api", r'registry host "Acme" is a host only because of its uppercase letters'),
    # a URL, copied from a browser: the scheme is named, and what to write instead
    ("https://quay.io/x", r'URL scheme \(https://\), .* write "quay.io/x"'),
    ("docker://nginx:1.27", r'URL scheme \(docker://\), .* write "nginx:1.27"'),
    ("quay.io:/x", r'port "" must be a number'),
    ("quay.io:abc/x", r'port "abc" must be a number'),
    ("quay.io:0/x", r'port "0" must be a number from 1 to 65535'),
    ("quay.io:65536/x", r'port "65536" must be a number from 1 to 65535'),
    ("quay.io:05000/x", r'port "05000" .* without leading zeros'),
    ("quay.io:443:443/x", r'port "443:443" must be a number'),
    ("[::1/x", r'registry host "\[::1" is not a valid bracketed IPv6 address'),
    ("[::g]:5000/x", r"not a valid bracketed IPv6 address"),
    ("[1:2:3:4:5:6:7:8:9]/x", r"not a valid bracketed IPv6 address"),
    ("[fe80::1%eth0]/x", r"not a valid bracketed IPv6 address"),
    ("[::1]5000/x", r"only a :port may follow an IPv6 address"),
    # paths
    ("quay.io//x", r'repository path "/x" has an empty component'),
    ("quay.io/x/", r'repository path "x/" has an empty component'),
    ("quay.io/", r'repository path "" has an empty component'),
    ("/x", r'repository path "/x" has an empty component'),
    ("//x", r'repository path "//x" has an empty component'),
    ("quay.io/Acme/x", r'repository name "Acme/x" must be lowercase$'),
    ("QUAY.IO/Acme/x", r'repository name "Acme/x" must be lowercase'),
    ("Nginx", r'repository name "Nginx" must be lowercase'),
    ("localhost:5000/X", r'repository name "X" must be lowercase'),
    ("quay.io/x-", r'path component "x-" is invalid'),
    ("quay.io/-x", r'path component "-x" is invalid'),
    ("quay.io/.x", r'path component ".x" is invalid'),
    ("quay.io/x..y", r'path component "x..y" is invalid'),
    ("quay.io/x___y", r'path component "x___y" is invalid'),
    ("quay.io/x#y", r'path component "x#y" is invalid'),
    ("quay.io/x?y=1", r'path component "x\?y=1" is invalid'),
    ("quay.io/x:v1:v2", r'path component "x:v1" is invalid'),
    ("[abc]/x", r'path component "\[abc\]" is invalid'),
    # tags
    ("nginx:", r'":" must be followed by a tag$'),
    (f"nginx:@{SHA256}", r'":" must be followed by a tag'),
    ("nginx:.v1", r'tag ".v1" is invalid'),
    ("nginx:-v1", r'tag "-v1" is invalid'),
    ("nginx:v1+x", r'tag "v1\+x" is invalid'),
    ("nginx:" + "t" * 129, r"tag is 129 characters long; the limit is 128$"),
    # missing name, lengths
    (":latest", r"has no repository name"),
    (f"@{SHA256}", r"has no repository name"),
    ("quay.io/" + "a" * 248, r"repository name is 256 characters long; the limit is 255"),
    ("a" * 256, r"repository name is 256 characters long"),
    ("a" * 250, r"repository name is 268 characters long"),
    # digests
    ("nginx@", r'"@" must be followed by a digest'),
    ("quay.io:443@evil", r'digest "evil" must be <algorithm>:<hex>'),
    ("user@quay.io/x", r'digest "quay.io/x" must be <algorithm>:<hex>'),
    ("nginx@sha256", r'digest "sha256" must be <algorithm>:<hex>'),
    ("nginx@:abc", r'digest ":abc" must be <algorithm>:<hex>'),
    ("nginx@sha256:abc", r'digest "sha256:abc" must have 64 hex characters, not 3$'),
    ("nginx@sha256:" + HEX64[:63], r"must have 64 hex characters, not 63"),
    ("nginx@sha256:" + HEX64 + "0", r"must have 64 hex characters, not 65"),
    ("nginx@sha256:" + HEX64.upper(), r"must be lowercase hex"),
    ("nginx@sha512:" + HEX64, r"must have 128 hex characters, not 64"),
    ("nginx@sha384:" + HEX64 + HEX64[:32], r'digest algorithm "sha384" is not accepted'),
    ("nginx@md5:" + HEX64[:32], r'digest algorithm "md5" is not accepted; use sha256 or sha512'),
    ("nginx@SHA256:" + HEX64, r'digest algorithm "SHA256" is not accepted'),
    (f"nginx@{SHA256}@{SHA256}", r"must be lowercase hex"),
    (f"nginx@{SHA256}:v1", r"must be lowercase hex"),
    # bare image IDs
    (SHA256, r"looks like an image ID"),
    (HEX64, r"looks like an image ID"),
]


@pytest.mark.parametrize(("text", "domain", "path", "tag", "digest", "canonical"), VALID)
def test_valid(
    text: str, domain: str, path: str, tag: str | None, digest: str | None, canonical: str
) -> None:
    ref = parse_reference(text)
    assert ref == ImageRef(domain, path, tag, digest)
    assert ref.repository == f"{domain}/{path}"
    assert str(ref) == canonical
    assert parse_reference(canonical) == ref


@pytest.mark.parametrize(("text", "pattern"), INVALID)
def test_invalid(text: str, pattern: str) -> None:
    with pytest.raises(ImageReferenceError, match=pattern) as caught:
        parse_reference(text)
    assert re.search(pattern, caught.value.message)
    for shown in (caught.value.message, str(caught.value)):
        assert shown.isascii() and shown.isprintable(), shown


def test_table_size() -> None:
    assert len(VALID) + len(INVALID) >= 70


def test_error_names_image_safely() -> None:
    with pytest.raises(ImageReferenceError) as caught:
        parse_reference("quay.io/x\nlevel=info msg=admitted")
    assert caught.value.image == '"quay.io/x\\nlevel=info msg=admitted"'
    assert caught.value.outcome == "deny"
    with pytest.raises(ImageReferenceError) as caught:
        parse_reference("quay.io/Acme")
    assert caught.value.image == "quay.io/Acme"


def test_long_input_is_shortened_in_messages() -> None:
    with pytest.raises(ImageReferenceError) as caught:
        parse_reference("quay.io/x:" + "-" * 100)
    assert len(caught.value.message) < 200
    assert len(str(caught.value)) < 400


def test_pinned_and_with_digest() -> None:
    ref = parse_reference("quay.io/acme/api:v1")
    assert not ref.pinned
    pinned = ref.with_digest(SHA256)
    assert pinned.pinned
    assert pinned == ImageRef("quay.io", "acme/api", "v1", SHA256)
    assert str(pinned) == f"quay.io/acme/api:v1@{SHA256}"
    with pytest.raises(ImageReferenceError, match="must have 64 hex characters") as caught:
        ref.with_digest("sha256:abc")
    assert caught.value.image == "quay.io/acme/api:v1"


def test_refs_are_hashable_values() -> None:
    assert {parse_reference("nginx"), parse_reference("docker.io/library/nginx:latest")} == {
        ImageRef("docker.io", "library/nginx", "latest")
    }


_REFERENCE_LIKE = st.from_regex(
    r"(?:[a-zA-Z0-9.-]{1,12}(?::[0-9]{1,6})?/|\[[0-9a-fA-F:]{2,12}\](?::[0-9]{1,5})?/)?"
    r"[a-z0-9._-]{1,10}(?:/[a-z0-9._-]{1,10}){0,3}"
    r"(?::[A-Za-z0-9_.-]{1,10})?(?:@sha256:[0-9a-f]{64})?",
    fullmatch=True,
)
_ANY_TEXT = st.one_of(
    st.text(),
    st.text(alphabet="abcxyz019ABZ.-_:/@[] \n", max_size=40),
    _REFERENCE_LIKE,
)


@settings(max_examples=600)
@given(_ANY_TEXT)
def test_parse_rejects_cleanly_or_round_trips(text: str) -> None:
    try:
        ref = parse_reference(text)
    except ImageReferenceError as exc:
        assert exc.message.isascii() and exc.message.isprintable()
        return
    again = parse_reference(str(ref))
    assert again == ref
    assert str(again) == str(ref)
    assert ref.domain == ref.domain.lower()
    assert ref.tag is not None or ref.digest is not None
