"""SM9 (GB/T 38635 / GM/T 0044): the standard's annex examples, and a second implementation.

Signing: the annex example (master secret ks, identity "Alice", message
"Chinese IBS standard", the annex's random r) must give the annex's master
public key, Alice's signing key and the signature (h, S) byte for byte.
Encryption: the annex's master key and "Bob" must give Bob's key, and Bob's
key must open the annex's ciphertext. gmalg (pure Python, MIT) is the second
implementation: each side verifies and decrypts what the other made.
"""

from __future__ import annotations

import gmalg
import pytest

from medchain import crypto
from medchain.crypto import sm9
from medchain.crypto.suites import sm9_private_key, sm9_public_key

KS = bytes.fromhex("000130E78459D78545CB54C587E02CF480CE0B66340F319F348A1D5B1F2DC5F4")
PPUBS = bytes.fromhex(
    "9F64080B3084F733E48AFF4B41B565011CE0711C5E392CFB0AB1B6791B94C408"
    "29DBA116152D1F786CE843ED24A3B573414D2177386A92DD8F14D65696EA5E32"
    "69850938ABEA0112B57329F447E3A0CBAD3E2FDB1A77F335E89E1408D0EF1C25"
    "41E00A53DDA532DA1A7CE027B7A46F741006E85F5CDFF0730E75C05FB4E3216D"
)
DS_ALICE = bytes.fromhex(
    "A5702F05CF1315305E2D6EB64B0DEB923DB1A0BCF0CAFF90523AC8754AA69820"
    "78559A844411F9825C109F5EE3F52D720DD01785392A727BB1556952B2B013D3"
)
R_SIGN = 0x033C8616B06704813203DFD00965022ED15975C662337AED648835DC4B1CBE
H = bytes.fromhex("823C4B21E4BD2DFE1ED92C606653E996668563152FC33F55D7BFBB9BD9705ADB")
S = bytes.fromhex(
    "73BF96923CE58B6AD0E13E9643A406D8EB98417C50EF1B29CEF9ADB48B6D598C"
    "856712F1C2E0968AB7769F42A99586AED139D5B8B3E15891827CC2ACED9BAA05"
)
KE = bytes.fromhex("0001EDEE3778F441F8DEA3D9FA0ACC4E07EE36C93F9A08618AF4AD85CEDE1C22")
PPUBE = bytes.fromhex(
    "787ED7B8A51F3AB84E0A66003F32DA5C720B17ECA7137D39ABC66E3C80A892FF"
    "769DE61791E5ADC4B9FF85A31354900B202871279A8C49DC3F220F644C57A7B1"
)
DE_BOB = bytes.fromhex(
    "94736ACD2C8C8796CC4785E938301A139A059D3537B6414140B2D31EECF41683"
    "115BAE85F5D8BC6C3DBD9E5342979ACCCF3C2F4F28420B1CB4F8C0B59A19B158"
    "7AA5E47570DA7600CD760A0CF7BEAF71C447F3844753FE74FA7BA92CA7D3B55F"
    "27538A62E7F7BFB51DCE08704796D94C9D56734F119EA44732B50E31CDEB75C1"
)
# Annex ciphertext C1 || C3 || C2 for "Chinese IBE standard" to Bob (KDF-stream cipher).
C1 = bytes.fromhex(
    "2445471164490618E1EE20528FF1D545B0F14C8BCAA44544F03DAB5DAC07D8FF"
    "42FFCA97D57CDDC05EA405F2E586FEB3A6930715532B8000759F13059ED59AC0"
)
C3 = bytes.fromhex("BA672387BCD6DE5016A158A52BB2E7FC429197BCAB70B25AFEE37A2B9DB9F367")
C2 = bytes.fromhex("1B5F5B0E951489682F3E64E1378CDD5DA9513B1C")


def test_annex_signing_master_key_and_alice_key() -> None:
    assert sm9.master_public(KS) == PPUBS
    assert sm9.extract_sign_key(KS, b"Alice") == DS_ALICE


def test_annex_signature_byte_for_byte() -> None:
    sig = sm9.sign(DS_ALICE, PPUBS, b"Chinese IBS standard", r=R_SIGN)
    assert sig == H + S
    assert sm9.verify(PPUBS, b"Alice", b"Chinese IBS standard", sig)


def test_annex_signature_refused_for_other_identity_message_or_master() -> None:
    sig = H + S
    assert not sm9.verify(PPUBS, b"Alicf", b"Chinese IBS standard", sig)
    assert not sm9.verify(PPUBS, b"Alice", b"Chinese IBS standarD", sig)
    other = sm9.master_public(sm9.generate_master_secret())
    assert not sm9.verify(other, b"Alice", b"Chinese IBS standard", sig)
    assert not sm9.verify(PPUBS, b"Alice", b"Chinese IBS standard", sig[:-1])
    assert not sm9.verify(PPUBS, b"Alice", b"Chinese IBS standard", bytes(96))
    assert not sm9.verify(bytes(128), b"Alice", b"Chinese IBS standard", sig)


def test_annex_encryption_key_and_ciphertext() -> None:
    assert sm9.enc_master_public(KE) == PPUBE
    bob = sm9.extract_enc_key(KE, b"Bob")
    assert bob == DE_BOB
    assert sm9.decrypt(bob, b"Bob", C1 + C3 + C2) == b"Chinese IBE standard"
    with pytest.raises(sm9.SM9Error):
        sm9.decrypt(bob, b"Bob", C1 + C3 + C2[:-1] + bytes([C2[-1] ^ 1]))
    with pytest.raises(sm9.SM9Error):
        sm9.decrypt(bob, b"Alice", C1 + C3 + C2)


def test_signatures_cross_verify_with_gmalg() -> None:
    ks = sm9.generate_master_secret()
    mpk = b"\x04" + sm9.master_public(ks)
    kgc = gmalg.SM9KGC(hid_s=b"\x01", msk_s=ks, mpk_s=mpk)
    ident = b"did:medchain:cardiology-on-call"
    ours = sm9.extract_sign_key(ks, ident)
    assert kgc.generate_sk_sign(ident) == b"\x04" + ours
    sig = sm9.sign(ours, mpk[1:], b"tx body")
    theirs = gmalg.SM9(hid_s=b"\x01", mpk_s=mpk, sk_s=b"\x04" + ours, uid=ident)
    assert theirs.verify(b"tx body", sig[:32], b"\x04" + sig[32:])
    h, s = theirs.sign(b"other body")
    assert sm9.verify(mpk[1:], ident, b"other body", h + s[1:])
    assert not sm9.verify(mpk[1:], ident, b"other bodY", h + s[1:])


def test_encryption_crosses_with_gmalg() -> None:
    ke = sm9.generate_master_secret()
    ppube = sm9.enc_master_public(ke)
    bob = sm9.extract_enc_key(ke, b"Bob")
    kgc = gmalg.SM9KGC(hid_e=b"\x03", msk_e=ke, mpk_e=b"\x04" + ppube)
    sk = kgc.generate_sk_encrypt(b"Bob")
    assert sk == b"\x04" + bob
    them = gmalg.SM9(hid_e=b"\x03", mpk_e=b"\x04" + ppube, sk_e=sk, uid=b"Bob")
    c = them.encrypt(b"a 16-byte SM4 k!", b"Bob")  # 04 || C1 || C3 || C2
    assert sm9.decrypt(bob, b"Bob", c[1:]) == b"a 16-byte SM4 k!"
    ours = sm9.encrypt(ppube, b"Bob", b"another data key")
    assert them.decrypt(b"\x04" + ours) == b"another data key"


def test_sm9_suite_signs_as_a_did_and_wraps_to_it() -> None:
    ks = sm9.generate_master_secret()
    mpk = sm9.master_public(ks)
    did = "did:medchain:4kF7oncall"
    ke = sm9.generate_master_secret()
    enc_key = sm9.extract_enc_key(ke, did.encode())
    key = crypto.keypair_from_private(
        "sm9", sm9_private_key(sm9.extract_sign_key(ks, did.encode()), mpk, did, enc_key)
    )
    assert key.public == sm9_public_key(mpk, did)
    sig = crypto.sign(key, b"envelope")
    assert crypto.verify("sm9", key.public, b"envelope", sig)
    assert not crypto.verify("sm9", sm9_public_key(mpk, did + "x"), b"envelope", sig)
    with pytest.raises(sm9.SM9Error):
        crypto.generate_keypair("sm9")

    data_key = crypto.new_data_key()
    wrapped = crypto.sm9_wrap_key(sm9.enc_master_public(ke), did, data_key)
    mine = sm9.extract_enc_key(ke, did.encode())
    assert crypto.sm9_unwrap_key(mine, did, wrapped) == data_key
    assert crypto.unwrap_key(key, wrapped) == data_key  # the member's key file opens it too
    with pytest.raises(crypto.DecryptionFailed):
        crypto.sm9_unwrap_key(sm9.extract_enc_key(ke, b"someone else"), did, wrapped)
