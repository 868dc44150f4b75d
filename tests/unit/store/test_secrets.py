from __future__ import annotations

import base64
import os
import stat
from collections.abc import Callable
from pathlib import Path

import pytest

from hodei.store.secrets import (
    SEALED_PREFIX,
    SecretBox,
    SecretKeyError,
    SecretUnreadableError,
    load_or_create_key_file,
    new_key_text,
    open_all,
    parse_secret_key,
)

JOB = "0b6f2d1c-3c1e-4a51-9d53-6f1f3bb0a7e1"
OTHER_JOB = "5d9c7c43-8f35-4c6a-b1a4-1df9f4b0e2aa"


def box() -> SecretBox:
    return SecretBox(os.urandom(32))


def test_a_sealed_value_opens_to_itself_and_shows_nothing_of_it() -> None:
    one = box()
    sealed = one.seal(JOB, "s3cr3t-value ✓")
    assert sealed.startswith(SEALED_PREFIX)
    assert "s3cr3t" not in sealed
    assert one.open(JOB, sealed) == "s3cr3t-value ✓"


def test_each_seal_uses_a_fresh_nonce() -> None:
    one = box()
    assert one.seal(JOB, "same") != one.seal(JOB, "same")


def test_another_key_does_not_open_it() -> None:
    sealed = box().seal(JOB, "value")
    with pytest.raises(SecretUnreadableError, match="HODEI_SECRET_KEY"):
        box().open(JOB, sealed)


def test_an_altered_value_does_not_open() -> None:
    one = box()
    raw = bytearray(base64.b64decode(one.seal(JOB, "value").removeprefix(SEALED_PREFIX)))
    raw[-1] ^= 1
    with pytest.raises(SecretUnreadableError):
        one.open(JOB, SEALED_PREFIX + base64.b64encode(bytes(raw)).decode())
    with pytest.raises(SecretUnreadableError):
        one.open(JOB, SEALED_PREFIX + "not base64!")


def test_a_value_moved_to_another_job_does_not_open() -> None:
    one = box()
    with pytest.raises(SecretUnreadableError, match=OTHER_JOB):
        one.open(OTHER_JOB, one.seal(JOB, "value"))


def test_a_value_stored_before_encryption_reads_as_it_is() -> None:
    assert box().open(JOB, "plain-old") == "plain-old"
    assert open_all(None, JOB, {"A": "plain-old"}) == {"A": "plain-old"}


def test_open_all_without_a_key_refuses_sealed_values() -> None:
    sealed = box().seal_all(JOB, {"A": "1"})
    with pytest.raises(SecretUnreadableError, match="no HODEI_SECRET_KEY"):
        open_all(None, JOB, sealed)


def test_open_all_round_trip() -> None:
    one = box()
    assert open_all(one, JOB, one.seal_all(JOB, {"A": "1", "B": "2"})) == {"A": "1", "B": "2"}


@pytest.mark.parametrize("encode", [base64.b64encode, base64.urlsafe_b64encode])
def test_a_key_is_read_as_standard_or_url_safe_base64_padded_or_not(
    encode: Callable[[bytes], bytes],
) -> None:
    key = bytes(range(200, 232))  # encodes with both + and / (or - and _)
    text = encode(key).decode()
    assert parse_secret_key(text) == key
    assert parse_secret_key(text.rstrip("=") + "\n") == key


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("not*base64", "not base64"),
        (base64.b64encode(b"short").decode(), "holds 5"),
        (base64.b64encode(bytes(33)).decode(), "holds 33"),
        ("", "holds 0"),
    ],
)
def test_a_bad_key_names_the_setting_and_never_the_key(text: str, message: str) -> None:
    with pytest.raises(SecretKeyError, match=message) as caught:
        parse_secret_key(text)
    assert "HODEI_SECRET_KEY" in str(caught.value)
    if text:
        assert text not in str(caught.value)


def test_a_box_needs_32_bytes_and_hides_its_key() -> None:
    with pytest.raises(SecretKeyError):
        SecretBox(bytes(16))
    key = os.urandom(32)
    assert key.hex() not in repr(SecretBox(key))
    assert len(parse_secret_key(new_key_text())) == 32


def test_the_key_file_is_made_private_once_then_kept(tmp_path: Path) -> None:
    path = tmp_path / "secret.key"
    key, created = load_or_create_key_file(path)
    assert created
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_or_create_key_file(path) == (key, False)


def test_a_bad_key_file_is_named(tmp_path: Path) -> None:
    path = tmp_path / "secret.key"
    path.write_text("garbage")
    with pytest.raises(SecretKeyError, match=str(path)):
        load_or_create_key_file(path)
