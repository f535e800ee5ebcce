"""Crypto recipes and primitives against published vectors and two other SM2 stacks.

Vectors: GB/T 32905 (SM3), GB/T 32907 (SM4), RFC 8998 A.1 (SM4-GCM) and the
GB/T 32918 / GM/T 0003 appendix examples on sm2p256v1 (SM2). Cross-checks run
against gmssl-pyx (GmSSL 3, an independent implementation) and the system
`openssl` command-line tool.
"""

from __future__ import annotations

import base64
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import gmssl_pyx
import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from medchain import crypto
from medchain.crypto import primitives

# --- published vectors -------------------------------------------------------

SM4_KEY = bytes.fromhex("0123456789abcdeffedcba9876543210")

RFC8998_KEY = bytes.fromhex("0123456789ABCDEFFEDCBA9876543210")
RFC8998_IV = bytes.fromhex("00001234567800000000ABCD")
RFC8998_AAD = bytes.fromhex("FEEDFACEDEADBEEFFEEDFACEDEADBEEFABADDAD2")
RFC8998_PLAINTEXT = bytes.fromhex(
    "AAAAAAAAAAAAAAAABBBBBBBBBBBBBBBBCCCCCCCCCCCCCCCCDDDDDDDDDDDDDDDD"
    "EEEEEEEEEEEEEEEEFFFFFFFFFFFFFFFFEEEEEEEEEEEEEEEEAAAAAAAAAAAAAAAA"
)
RFC8998_CIPHERTEXT = bytes.fromhex(
    "17F399F08C67D5EE19D0DC9969C4BB7D5FD46FD3756489069157B282BB200735"
    "D82710CA5C22F0CCFA7CBF93D496AC15A56834CBCF98C397B4024A2691233B8D"
)
RFC8998_TAG = bytes.fromhex("83DE3541E4C2B58177E065A9BF7B62EC")

SM2_PRIVATE = bytes.fromhex("3945208F7B2144B13F36E38AC6D39F95889393692860B51A42FB81EF4DF7C5B8")
SM2_PUBLIC = bytes.fromhex(
    "09F9DF311E5421A150DD7D161E4BC5C672179FAD1833FC076BB08FF356F35020"
    "CCEA490CE26775A52DC6EA718CC1AA600AED05FBF35E084A6632F6072DA9AD13"
)
SM2_MESSAGE = b"message digest"
SM2_R = 0xF5A03B0648D2C4630EEAC513E1BB81A15944DA3827D5B74143AC7EACEEE720B3
SM2_S = 0xB1B6AA29DF212FD8763182BC0D421CA1BB9038FD1F7F42D4840B69C485BBC1AA
SM2_CIPHERTEXT = bytes.fromhex(
    "307c022004EBFC718E8D1798620432268E77FEB6415E2EDE0E073C0F4F640ECD2E149A73"
    "022100E858F9D81E5430A57B36DAAB8F950A3C64E6EE6A63094D99283AFF767E124DF0"
    "042059983C18F809E262923C53AEC295D30383B54E39D609D160AFCB1908D0BD8766"
    "041321886CA989CA9C7D58087307CA93092D651EFA"
)
SM2_PLAINTEXT = b"encryption standard"
SM2_ORDER = 0xFFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFF7203DF6B21C6052B53BBF40939D54123

# SubjectPublicKeyInfo for an SM2 key, up to the 0x04 of the uncompressed point.
SM2_SPKI_PREFIX = bytes.fromhex("3059301306072a8648ce3d020106082a811ccf5501822d03420004")
DISTINGUISHING_ID = "1234567812345678"


def der_integer(value: int) -> bytes:
    body = value.to_bytes((value.bit_length() + 8) // 8, "big")
    return bytes([0x02, len(body)]) + body


def der_signature(r: int, s: int) -> bytes:
    """SEQUENCE { INTEGER r, INTEGER s }, the form SM2 signatures travel in."""
    body = der_integer(r) + der_integer(s)
    return bytes([0x30, len(body)]) + body


def flip(data: bytes, index: int) -> bytes:
    out = bytearray(data)
    out[index] ^= 0x01
    return bytes(out)


def sample_messages() -> list[bytes]:
    """Lengths around SM3's 64-byte block and padding boundaries."""
    return [bytes((7 * i + n) % 256 for i in range(n)) for n in (0, 1, 55, 56, 63, 64, 65, 1000)]


PUBLISHED_SIGNATURE = der_signature(SM2_R, SM2_S)
PUBLISHED_KEY = crypto.keypair_from_private("sm", SM2_PRIVATE)


# --- SM3 ------------------------------------------------------------------------


def test_sm3_matches_gbt32905_example_1() -> None:
    assert crypto.sm3(b"abc").hex() == (
        "66c7f0f462eeedd9d1f2d46bdc10e4e24167c4875cf2f7a2297da02b8f4ba8e0"
    )


def test_sm3_matches_gbt32905_example_2() -> None:
    assert crypto.sm3(b"abcd" * 16).hex() == (
        "debe9ff92275b8a138604889c18e5a4d6fdb70e5387e5765293dcba39c0c5732"
    )


def test_sm3_agrees_with_gmssl_across_block_boundaries() -> None:
    for message in sample_messages():
        assert crypto.sm3(message) == gmssl_pyx.sm3_hash(message), len(message)


# --- SM4 ------------------------------------------------------------------------


def test_sm4_block_matches_gbt32907_example_1() -> None:
    ciphertext = primitives.sm4_block_encrypt(SM4_KEY, SM4_KEY)
    assert ciphertext.hex() == "681edf34d206965e86b3e94f536e4246"


def test_sm4_encrypted_one_million_times_matches_gbt32907_example_2() -> None:
    # The helper builds a cipher per call (~4 s for all of them); it does the first
    # thousand rounds and one reused ECB encryptor does the rest.
    block = SM4_KEY
    for _ in range(1_000):
        block = primitives.sm4_block_encrypt(SM4_KEY, block)
    encryptor = Cipher(algorithms.SM4(SM4_KEY), modes.ECB()).encryptor()
    for _ in range(1_000_000 - 1_000):
        block = encryptor.update(block)
    assert block.hex() == "595298c7c6fd271f0402f804c33d3f66"


def test_sm4_gcm_matches_rfc8998_vector() -> None:
    sealed = primitives.sm4_gcm_seal(RFC8998_KEY, RFC8998_PLAINTEXT, RFC8998_AAD, RFC8998_IV)
    assert sealed == RFC8998_IV + RFC8998_CIPHERTEXT + RFC8998_TAG


def test_rfc8998_vector_opens_to_its_plaintext() -> None:
    sealed = RFC8998_IV + RFC8998_CIPHERTEXT + RFC8998_TAG
    assert crypto.open_sealed(RFC8998_KEY, sealed, RFC8998_AAD) == RFC8998_PLAINTEXT


def test_sm4_gcm_agrees_with_gmssl_both_ways() -> None:
    key, nonce, aad = bytes(range(16)), bytes(range(12)), b"record-42"
    for plaintext in filter(None, sample_messages()):  # gmssl-pyx refuses empty plaintext
        ours = primitives.sm4_gcm_seal(key, plaintext, aad, nonce)
        theirs_ct, theirs_tag = gmssl_pyx.sm4_gcm_encrypt(key, nonce, aad, plaintext)
        assert ours == nonce + theirs_ct + theirs_tag
        sealed = crypto.seal(key, plaintext, aad)
        assert gmssl_pyx.sm4_gcm_decrypt(key, sealed[:12], aad, sealed[12:-16], sealed[-16:]) == (
            plaintext
        )


# --- SM2: published example ----------------------------------------------------------


def test_sm2_public_key_derives_from_published_private_key() -> None:
    assert primitives.sm2_public_from_private(SM2_PRIVATE) == SM2_PUBLIC
    assert PUBLISHED_KEY.public == SM2_PUBLIC


def test_published_sm2_signature_verifies() -> None:
    assert crypto.verify("sm", SM2_PUBLIC, SM2_MESSAGE, PUBLISHED_SIGNATURE)


def test_published_sm2_signature_fails_for_changed_message() -> None:
    assert not crypto.verify("sm", SM2_PUBLIC, b"message digesT", PUBLISHED_SIGNATURE)
    assert not crypto.verify("sm", SM2_PUBLIC, SM2_MESSAGE + b"\x00", PUBLISHED_SIGNATURE)


@pytest.mark.parametrize("index", [4, 20, 35, 40, 60, len(PUBLISHED_SIGNATURE) - 1])
def test_published_sm2_signature_fails_with_any_byte_changed(index: int) -> None:
    tampered = flip(PUBLISHED_SIGNATURE, index)
    assert not crypto.verify("sm", SM2_PUBLIC, SM2_MESSAGE, tampered)


def test_published_sm2_signature_fails_under_another_key() -> None:
    other = crypto.generate_keypair("sm")
    assert not crypto.verify("sm", other.public, SM2_MESSAGE, PUBLISHED_SIGNATURE)


def test_sm2_signature_accepts_only_its_strict_der_encoding() -> None:
    # One signature, one encoding: otherwise a relayer could change a tx id.
    with_trailing_byte = PUBLISHED_SIGNATURE + b"\x00"
    r_body = SM2_R.to_bytes(33, "big")  # needs 33 bytes anyway (high bit set)
    s_padded = b"\x00" + SM2_S.to_bytes(33, "big")  # one zero byte too many
    body = bytes([0x02, len(r_body)]) + r_body + bytes([0x02, len(s_padded)]) + s_padded
    non_minimal = bytes([0x30, len(body)]) + body
    assert not crypto.verify("sm", SM2_PUBLIC, SM2_MESSAGE, with_trailing_byte)
    assert not crypto.verify("sm", SM2_PUBLIC, SM2_MESSAGE, non_minimal)


def test_published_sm2_ciphertext_unwraps_to_its_plaintext() -> None:
    assert crypto.unwrap_key(PUBLISHED_KEY, SM2_CIPHERTEXT) == SM2_PLAINTEXT


@pytest.mark.parametrize("index", [5, 40, 80, 110, len(SM2_CIPHERTEXT) - 1])
def test_published_sm2_ciphertext_with_a_flipped_byte_fails(index: int) -> None:
    with pytest.raises(crypto.DecryptionFailed):
        crypto.unwrap_key(PUBLISHED_KEY, flip(SM2_CIPHERTEXT, index))


@pytest.mark.parametrize("scalar", [0, SM2_ORDER], ids=["zero", "order"])
def test_sm2_private_key_that_is_zero_mod_order_is_rejected(scalar: int) -> None:
    with pytest.raises(ValueError):
        crypto.keypair_from_private("sm", scalar.to_bytes(32, "big"))


@pytest.mark.parametrize(
    "scalar", [SM2_ORDER - 1, SM2_ORDER + 1, 2**256 - 1], ids=["order-1", "order+1", "max"]
)
def test_sm2_private_key_outside_the_valid_range_is_rejected(scalar: int) -> None:
    with pytest.raises(ValueError):
        crypto.keypair_from_private("sm", scalar.to_bytes(32, "big"))


@pytest.mark.parametrize("scalar", [1, SM2_ORDER - 2], ids=["one", "order-2"])
def test_sm2_private_keys_at_the_ends_of_the_valid_range_sign_verifiably(scalar: int) -> None:
    key = crypto.keypair_from_private("sm", scalar.to_bytes(32, "big"))
    assert crypto.verify("sm", key.public, b"m", crypto.sign(key, b"m"))
    assert gmssl_pyx.sm2_verify(key.public, b"m", crypto.sign(key, b"m"))


# --- SM2: cross-check with gmssl-pyx -------------------------------------------------


def test_gmssl_verifies_our_sm2_signatures() -> None:
    key = crypto.generate_keypair("sm")
    for message in sample_messages():
        assert gmssl_pyx.sm2_verify(key.public, message, crypto.sign(key, message))


def test_we_verify_gmssl_sm2_signatures() -> None:
    public, private = gmssl_pyx.sm2_key_generate()
    for message in sample_messages():
        signature = gmssl_pyx.sm2_sign(private, public, message)
        assert crypto.verify("sm", public, message, signature)
        assert not crypto.verify("sm", public, message + b"!", signature)


def test_gmssl_verifies_published_signature_and_rejects_a_changed_message() -> None:
    assert gmssl_pyx.sm2_verify(SM2_PUBLIC, SM2_MESSAGE, PUBLISHED_SIGNATURE)
    assert not gmssl_pyx.sm2_verify(SM2_PUBLIC, b"message digesT", PUBLISHED_SIGNATURE)


def test_sm2_public_key_derivation_agrees_with_gmssl() -> None:
    public, private = gmssl_pyx.sm2_key_generate()
    assert crypto.keypair_from_private("sm", private).public == public


def test_gmssl_unwraps_our_wrapped_key() -> None:
    public, private = gmssl_pyx.sm2_key_generate()
    data_key = crypto.new_data_key()
    assert gmssl_pyx.sm2_decrypt(private, crypto.wrap_key(public, data_key)) == data_key


def test_we_unwrap_a_key_gmssl_wrapped() -> None:
    key = crypto.generate_keypair("sm")
    data_key = crypto.new_data_key()
    assert crypto.unwrap_key(key, gmssl_pyx.sm2_encrypt(key.public, data_key)) == data_key


def test_gmssl_decrypts_published_sm2_ciphertext() -> None:
    assert gmssl_pyx.sm2_decrypt(SM2_PRIVATE, SM2_CIPHERTEXT) == SM2_PLAINTEXT


# --- SM2: cross-check with the openssl command-line tool ------------------------------

needs_openssl_cli = pytest.mark.skipif(
    shutil.which("openssl") is None, reason="the `openssl` command-line tool is not installed"
)


def openssl(*args: str | Path) -> bytes:
    done = subprocess.run(
        ["openssl", *map(str, args)], capture_output=True, check=False, timeout=30
    )
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    return done.stdout


def write_public_pem(path: Path, public: bytes) -> Path:
    der = SM2_SPKI_PREFIX + public
    lines = [base64.b64encode(der[i : i + 48]).decode() for i in range(0, len(der), 48)]
    path.write_text(
        "-----BEGIN PUBLIC KEY-----\n" + "\n".join(lines) + "\n-----END PUBLIC KEY-----\n"
    )
    return path


@needs_openssl_cli
def test_openssl_cli_reads_back_the_public_key_pem_we_build(tmp_path: Path) -> None:
    pem = write_public_pem(tmp_path / "pub.pem", SM2_PUBLIC)
    der = openssl("pkey", "-pubin", "-in", pem, "-outform", "DER")
    assert der == SM2_SPKI_PREFIX + SM2_PUBLIC


@needs_openssl_cli
def test_openssl_cli_accepts_our_sm2_signature(tmp_path: Path) -> None:
    key = crypto.generate_keypair("sm")
    message = b"consent grant 7 for patient 1"
    (tmp_path / "msg").write_bytes(message)
    (tmp_path / "sig").write_bytes(crypto.sign(key, message))
    pem = write_public_pem(tmp_path / "pub.pem", key.public)
    out = openssl(
        "pkeyutl", "-verify", "-rawin", "-digest", "sm3",
        "-pkeyopt", f"distid:{DISTINGUISHING_ID}",
        "-pubin", "-inkey", pem, "-in", tmp_path / "msg", "-sigfile", tmp_path / "sig",
    )  # fmt: skip
    assert b"Signature Verified Successfully" in out


@needs_openssl_cli
def test_openssl_cli_accepts_the_published_sm2_signature(tmp_path: Path) -> None:
    (tmp_path / "msg").write_bytes(SM2_MESSAGE)
    (tmp_path / "sig").write_bytes(PUBLISHED_SIGNATURE)
    pem = write_public_pem(tmp_path / "pub.pem", SM2_PUBLIC)
    out = openssl(
        "pkeyutl", "-verify", "-rawin", "-digest", "sm3",
        "-pkeyopt", f"distid:{DISTINGUISHING_ID}",
        "-pubin", "-inkey", pem, "-in", tmp_path / "msg", "-sigfile", tmp_path / "sig",
    )  # fmt: skip
    assert b"Signature Verified Successfully" in out


@needs_openssl_cli
def test_we_verify_an_sm2_signature_made_by_openssl_cli(tmp_path: Path) -> None:
    key_pem = tmp_path / "key.pem"
    openssl("ecparam", "-name", "SM2", "-genkey", "-out", key_pem)
    message = b"block 12 proposer vote"
    (tmp_path / "msg").write_bytes(message)
    signature = openssl(
        "pkeyutl", "-sign", "-rawin", "-digest", "sm3",
        "-pkeyopt", f"distid:{DISTINGUISHING_ID}", "-inkey", key_pem, "-in", tmp_path / "msg",
    )  # fmt: skip
    public_der = openssl("pkey", "-in", key_pem, "-pubout", "-outform", "DER")
    assert public_der.startswith(SM2_SPKI_PREFIX)
    public = public_der[-64:]
    assert crypto.verify("sm", public, message, signature)
    assert not crypto.verify("sm", public, message + b".", signature)


@needs_openssl_cli
def test_we_unwrap_a_key_openssl_cli_wrapped(tmp_path: Path) -> None:
    key = crypto.generate_keypair("sm")
    data_key = crypto.new_data_key()
    (tmp_path / "data_key").write_bytes(data_key)
    pem = write_public_pem(tmp_path / "pub.pem", key.public)
    wrapped = openssl("pkeyutl", "-encrypt", "-pubin", "-inkey", pem, "-in", tmp_path / "data_key")
    assert crypto.unwrap_key(key, wrapped) == data_key


# --- recipes: sealing -----------------------------------------------------------------


@pytest.mark.parametrize("suite", ["sm", "intl"])
def test_sealed_data_opens_with_same_key_and_aad(suite: str) -> None:
    key = crypto.new_data_key(suite)
    sealed = crypto.seal(key, b"blood type: O+", b"record-1", suite=suite)
    assert crypto.open_sealed(key, sealed, b"record-1", suite=suite) == b"blood type: O+"


def test_sealing_twice_gives_different_ciphertexts() -> None:
    key = crypto.new_data_key()
    assert crypto.seal(key, b"same", b"") != crypto.seal(key, b"same", b"")


def test_seal_uses_sm4_gcm_with_a_12_byte_nonce_and_16_byte_tag() -> None:
    key = crypto.new_data_key()
    sealed = crypto.seal(key, b"x" * 10, b"aad")
    assert len(key) == 16
    assert len(sealed) == 12 + 10 + 16
    assert primitives.sm4_gcm_seal(key, b"x" * 10, b"aad", sealed[:12]) == sealed


SEALED_PARTS = {"nonce": 0, "ciphertext": 15, "tag": -1}


@pytest.mark.parametrize("suite", ["sm", "intl"])
@pytest.mark.parametrize("part", sorted(SEALED_PARTS))
def test_tampered_sealed_data_fails_to_open(suite: str, part: str) -> None:
    key = crypto.new_data_key(suite)
    sealed = crypto.seal(key, b"diagnosis: healthy", b"record-1", suite=suite)
    with pytest.raises(crypto.DecryptionFailed):
        crypto.open_sealed(key, flip(sealed, SEALED_PARTS[part]), b"record-1", suite=suite)


@pytest.mark.parametrize("suite", ["sm", "intl"])
def test_sealed_data_fails_to_open_with_other_aad(suite: str) -> None:
    key = crypto.new_data_key(suite)
    sealed = crypto.seal(key, b"diagnosis: healthy", b"record-1", suite=suite)
    with pytest.raises(crypto.DecryptionFailed):
        crypto.open_sealed(key, sealed, b"record-2", suite=suite)


@pytest.mark.parametrize("suite", ["sm", "intl"])
def test_sealed_data_fails_to_open_with_other_key(suite: str) -> None:
    sealed = crypto.seal(crypto.new_data_key(suite), b"diagnosis", b"", suite=suite)
    with pytest.raises(crypto.DecryptionFailed):
        crypto.open_sealed(crypto.new_data_key(suite), sealed, b"", suite=suite)


@pytest.mark.parametrize("suite", ["sm", "intl"])
def test_truncated_sealed_data_fails_to_open(suite: str) -> None:
    key = crypto.new_data_key(suite)
    sealed = crypto.seal(key, b"", b"", suite=suite)
    for cut in (sealed[:-1], sealed[:12], b""):
        with pytest.raises(crypto.DecryptionFailed):
            crypto.open_sealed(key, cut, b"", suite=suite)


# --- recipes: key wrap ----------------------------------------------------------------


def test_wrapped_key_unwraps_for_its_recipient() -> None:
    recipient = crypto.generate_keypair("sm")
    data_key = crypto.new_data_key()
    assert crypto.unwrap_key(recipient, crypto.wrap_key(recipient.public, data_key)) == data_key


def test_wrapped_key_does_not_unwrap_for_another_key() -> None:
    recipient, other = crypto.generate_keypair("sm"), crypto.generate_keypair("sm")
    wrapped = crypto.wrap_key(recipient.public, crypto.new_data_key())
    with pytest.raises(crypto.DecryptionFailed):
        crypto.unwrap_key(other, wrapped)


@pytest.mark.parametrize("index", [3, 36, 75, 100, -1])
def test_tampered_wrapped_key_fails_to_unwrap(index: int) -> None:
    recipient = crypto.generate_keypair("sm")
    wrapped = crypto.wrap_key(recipient.public, crypto.new_data_key())
    with pytest.raises(crypto.DecryptionFailed):
        crypto.unwrap_key(recipient, flip(wrapped, index))


@pytest.mark.parametrize("garbage", [b"", b"\x30\x00", b"not a ciphertext" * 8])
def test_garbage_wrapped_key_fails_to_unwrap(garbage: bytes) -> None:
    with pytest.raises(crypto.DecryptionFailed):
        crypto.unwrap_key(crypto.generate_keypair("sm"), garbage)


def test_intl_suite_has_no_key_wrap() -> None:
    with pytest.raises(crypto.UnknownSuite):
        crypto.wrap_key(crypto.generate_keypair("intl").public, b"k" * 32, suite="intl")


# --- recipes: signatures ----------------------------------------------------------------


@pytest.mark.parametrize("suite", ["sm", "intl"])
def test_signature_verifies_for_its_message_and_key(suite: str) -> None:
    key = crypto.generate_keypair(suite)
    signature = crypto.sign(key, b"grant consent")
    assert crypto.verify(suite, key.public, b"grant consent", signature)


@pytest.mark.parametrize("suite", ["sm", "intl"])
def test_signature_fails_for_other_message_or_key(suite: str) -> None:
    key, other = crypto.generate_keypair(suite), crypto.generate_keypair(suite)
    signature = crypto.sign(key, b"grant consent")
    assert not crypto.verify(suite, key.public, b"revoke consent", signature)
    assert not crypto.verify(suite, other.public, b"grant consent", signature)


def test_intl_suite_signs_with_ed25519() -> None:
    key = crypto.generate_keypair("intl")
    signature = crypto.sign(key, b"m")
    assert len(key.public) == 32
    assert len(signature) == 64
    assert crypto.keypair_from_private("intl", key.private) == key


def test_keypair_rebuilt_from_private_half_signs_verifiably() -> None:
    key = crypto.generate_keypair("sm")
    rebuilt = crypto.keypair_from_private("sm", key.private)
    assert rebuilt == key
    assert crypto.verify("sm", key.public, b"m", crypto.sign(rebuilt, b"m"))


@pytest.mark.parametrize(
    ("suite", "public_length"), [("sm", 63), ("sm", 65), ("sm", 0), ("intl", 31), ("intl", 64)]
)
def test_verify_returns_false_for_public_key_of_wrong_length(
    suite: str, public_length: int
) -> None:
    key = crypto.generate_keypair(suite)
    signature = crypto.sign(key, b"m")
    public = (key.public * 3)[:public_length]
    assert crypto.verify(suite, public, b"m", signature) is False


def test_verify_returns_false_for_a_point_not_on_the_curve() -> None:
    signature = crypto.sign(PUBLISHED_KEY, b"m")
    assert crypto.verify("sm", bytes(64), b"m", signature) is False
    assert crypto.verify("sm", flip(SM2_PUBLIC, 63), b"m", signature) is False


@pytest.mark.parametrize("suite", ["sm", "intl"])
@pytest.mark.parametrize(
    "signature", [b"", b"\x00", b"\x30\x00", b"\x30\x06\x02\x01\x00\x02\x01\x00", b"\xff" * 72]
)
def test_verify_returns_false_for_garbage_signatures(suite: str, signature: bytes) -> None:
    key = crypto.generate_keypair(suite)
    assert crypto.verify(suite, key.public, b"m", signature) is False


def test_verify_returns_false_for_sm2_signature_with_r_or_s_out_of_range() -> None:
    for r, s in ((0, SM2_S), (SM2_R, 0), (SM2_R + SM2_ORDER, SM2_S), (SM2_R, SM2_S + SM2_ORDER)):
        assert crypto.verify("sm", SM2_PUBLIC, SM2_MESSAGE, der_signature(r, s)) is False


def test_verify_returns_false_for_unknown_suite() -> None:
    assert crypto.verify("falcon", SM2_PUBLIC, SM2_MESSAGE, PUBLISHED_SIGNATURE) is False


def test_unknown_suite_is_rejected_by_name() -> None:
    with pytest.raises(crypto.UnknownSuite, match="'falcon'"):
        crypto.get_suite("falcon")


@pytest.mark.parametrize("suite", ["sm", "intl"])
def test_keypair_repr_does_not_reveal_private_key(suite: str) -> None:
    key = crypto.generate_keypair(suite)
    for text in (repr(key), str(key), f"{key}", repr([key])):
        assert key.private.hex() not in text
        assert key.private.hex().upper() not in text
        assert repr(key.private) not in text


def test_sm2_verifies_correctly_from_two_threads_at_once() -> None:
    keys = [crypto.generate_keypair("sm") for _ in range(4)]
    cases = []
    for i in range(400):
        key = keys[i % 4]
        message = b"tx %d" % i
        signature = crypto.sign(key, message)
        valid = i % 3 != 0
        cases.append((key.public, message if valid else message + b"x", signature, valid))

    def check(case: tuple[bytes, bytes, bytes, bool]) -> bool:
        public, message, signature, _ = case
        return crypto.verify("sm", public, message, signature)

    with ThreadPoolExecutor(max_workers=2) as pool:
        results = list(pool.map(check, cases))
    assert results == [valid for *_, valid in cases]


def test_sm2_signs_correctly_from_two_threads_at_once() -> None:
    key = crypto.generate_keypair("sm")
    messages = [b"block %d" % i for i in range(200)]
    with ThreadPoolExecutor(max_workers=2) as pool:
        signatures = list(pool.map(lambda m: crypto.sign(key, m), messages))
    assert all(
        crypto.verify("sm", key.public, m, s) for m, s in zip(messages, signatures, strict=True)
    )
