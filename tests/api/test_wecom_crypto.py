"""WeCom callback crypto against both official vector sets and an independent implementation (wechatpy)."""

import base64

import pytest
from wechatpy.enterprise.crypto import WeChatCrypto

from api.wecom.crypto import (
    DECRYPT_FAILED,
    RECEIVEID_INVALID,
    SIGNATURE_INVALID,
    CryptoError,
    WeComCrypto,
    signature,
)
from api.wecom.messages import parse_message

A = ("hJqcu3uJ9Tn2gXPmxx2w9kkCkCE2EPYo", "6qkdMrq68nTKduznJYO1A37W2oEgpkMUvkttRToqhUt", "ww1436e0e65a779aee")
A_ECHO = "fsi1xnbH4yQh0+PJxcOdhhK6TDXkjMyhEPA7xB2TGz6b+g7xyAbEkRxN/3cNXW9qdqjnoVzEtpbhnFyq6SVHyA=="
A_POST = ("Kl7kjoSf6DMD1zh7rtrHjFaDapSCkaOnwu3bqLc5tAybhhMl9pFeK8NslNPVdMwmBQTNoW4mY7AIjeLvEl3NyeTkAgGzBhzTtRLNshw2AEew+"
          "kkYcD+Fq72Kt00fT0WnN87hGrW8SqGc+NcT3mu87Ha3dz1pSDi6GaUA6A0sqfde0VJPQbZ9U+3JWcoD4Z5jaU0y9GSh010wsHF8KZD24Yh"
          "mZH4ch4Ka7ilEbjbfvhKkNL65HHL0J6EYJIZUC2pFrdkJ7MhmEbU2qARR4iQHE7wy24qy0cRX3Mfp6iELcDNfSsPGjUQVDGxQDCWjayJOp"
          "cwocugux082f49HKYg84EpHSGXAyh+/oxwaWbvL6aSDPOYuPDGOCI8jmnKiypE+")
B = ("123456", "kWxPEV2UEDyxWpmPdKC3F4dgPDmOvfKX1HGnEUDS1aR", "wx49f0ab532d5d035a")
B_ECHO = "4ByGGj+sVCYcvGeQYhaKIk1o0pQRNbRjxybjTGblXrBaXlTXeOo1+bXFXDQQb1o6co6Yh9Bv41n7hOchLF6p+Q=="
B_POST = ("RgqEoJj5A4EMYlLvWO1F86ioRjZfaex/gePD0gOXTxpsq5Yj4GNglrBb8I2BAJVODGajiFnXBu7mCPatfjsu6IHCrsTyeDXzF6Bv283dGymzxh"
          "6ydJRvZsryDyZbLTE7rhnus50qGPMfp2wASFlzEgMW9z1ef/RD8XzaFYgm7iTdaXpXaG4+BiYyolBug/gYNx410cvkKR2/nPwBiT+P4hIiOAQqG"
          "p/TywZBtDh1yCF2KOd0gpiMZ5jSw3e29mTvmUHzkVQiMS6td7vXUaWOMZnYZlF3So2SjHnwh4jYFxdgpkHHqIrH/54SNdshoQgWYEvccTKe7FS7"
          "09/5t6NMxuGhcUGAPOQipvWTT4dShyqio7mlsl5noTrb++x6En749zCpQVhDpbV6GDnTbcX2e8K9QaNWHp91eBdCRxthuL0=")
B_PLAIN = ("<xml>\n<MsgType><![CDATA[text]]></MsgType>\n<Content><![CDATA[test]]></Content>\n<FromUserName><![CDATA["
           "wx49f0ab532d5d035a]]></FromUserName>\n<ToUserName><![CDATA[messense]]></ToUserName>\n<AgentID>1</AgentID>\n"
           "<CreateTime>1411525903</CreateTime>\n</xml>")
B_ENCRYPTED = ("9s4gMv99m88kKTh/H8IdkOiMg6bisoy3ypwy9H4hvSPe9nsGaqyw5hhSjdYbcrKk+j3nba4HMOTzHrluLBYqxgNcBqGsL8GqxlhZgURnAtObv"
               "esEl5nZ+uBE8bviY0LWke8Zy9V/QYKxNV2FqllNXcfmstttyIkMKCCmVbCFM2JTF5wY0nFhHZSjPUL2Q1qvSUCUld+/WIXrx0oyKQmpB6o8N"
               "RrrNrsDf03oxI1p9FxUgMnwKKZeOA/uu+2IEvEBtb7muXsVbwbgX05UPPJvFurDXafG0RQyPR+mf1nDnAtQmmNOuiR5MIkdQ39xn1vWwi1O5"
               "oazPoQJz0nTYjxxEE8kv3kFxtAGVRe3ypD3WeK2XeFYFMNMpatF9XiKzHo3")


def test_vector_a_url_verification_returns_the_echo():
    crypto = WeComCrypto(*A)
    assert crypto.verify_and_decrypt("012bc692d0a58dd4b10f8dfe5c4ac00ae211ebeb", "1476416373", "47744683",
                                     A_ECHO) == "1288432023552776189"


def test_vector_a_post_decrypts_to_the_official_message():
    message = parse_message(WeComCrypto(*A).verify_and_decrypt(
        "0c3914025cb4b4d68103f6bfc8db550f79dcf48e", "1476422779", "1597212914", A_POST))
    assert message["Content"] == "你好" and message["MsgId"] == "1456453720" and message["AgentID"] == "1000002"


def test_vector_b_url_verification_returns_the_echo():
    assert WeComCrypto(*B).verify_and_decrypt("dd6b9c95b495b3f7e2901bfbc76c664930ffdb96", "1411443780",
                                              "437374425", B_ECHO) == "5927782489442352469"


def test_vector_b_with_another_nonce_fails_the_signature():
    with pytest.raises(CryptoError) as err:
        WeComCrypto(*B).verify_and_decrypt("dd6b9c95b495b3f7e2901bfbc76c664930ffdb96", "1411443780", "437374424",
                                           B_ECHO)
    assert err.value.code == SIGNATURE_INVALID


def test_vector_b_post_with_one_byte_of_padding_decrypts():
    message = parse_message(WeComCrypto(*B).verify_and_decrypt(
        "74d92dfeb87ba7c714f89d98870ae5eb62dff26d", "1411525903", "461056294", B_POST))
    assert message["Content"] == "test" and message["MsgId"] == "4363689963896700987"


def test_vector_b_deterministic_encryption_matches():
    crypto = WeComCrypto(*B)
    encrypted = crypto.encrypt(B_PLAIN, random_prefix=b"1234567890123456")
    assert encrypted == B_ENCRYPTED
    assert signature(B[0], "1411525903", "461056294", encrypted) == "407518b7649e86ef23978113f92d27afa9296533"


def test_wechatpy_decrypts_what_we_encrypt():
    ours = WeComCrypto(*A)
    reply = ours.encrypted_reply("<xml><Content>你好，世界</Content></xml>", "1476422779", "42")
    assert WeChatCrypto(*A).decrypt_message(reply, _sig(reply), "1476422779", "42") == \
        "<xml><Content>你好，世界</Content></xml>"


def test_we_decrypt_what_wechatpy_encrypts():
    envelope = WeChatCrypto(*A).encrypt_message("<xml><Content>退订</Content></xml>", "77", "1476422779")
    encrypted = parse_message(envelope)["Encrypt"]
    sig = parse_message(envelope)["MsgSignature"]
    assert WeComCrypto(*A).verify_and_decrypt(sig, "1476422779", "77", encrypted) == \
        "<xml><Content>退订</Content></xml>"


def _sig(reply: str) -> str:
    return parse_message(reply)["MsgSignature"]


def test_tampered_padding_is_refused():
    crypto = WeComCrypto(*A)
    raw = bytearray(base64.b64decode(crypto.encrypt("hello")))
    raw[-17] ^= 0x01  # flips a byte of the last block's plaintext: the pad bytes no longer agree
    with pytest.raises(CryptoError) as err:
        crypto.decrypt(base64.b64encode(bytes(raw)).decode())
    assert err.value.code in (DECRYPT_FAILED, -40008)


def test_message_for_another_corp_is_refused():
    encrypted = WeComCrypto(A[0], A[1], "ww_other_corp").encrypt("<xml/>")
    with pytest.raises(CryptoError) as err:
        WeComCrypto(*A).decrypt(encrypted)
    assert err.value.code == RECEIVEID_INVALID


def test_short_aes_key_is_refused():
    with pytest.raises(CryptoError):
        WeComCrypto("t", "tooshort", "corp")
