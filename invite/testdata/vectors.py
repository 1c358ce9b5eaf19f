# Independent check of the invitation vectors (docs/invitations.md) with
# Python's hashlib and the cryptography package (Argon2id, Ed25519,
# ChaCha20-Poly1305; HChaCha20 written out here for XChaCha20).
import hashlib, struct, base64, sys
from cryptography.hazmat.primitives.kdf.argon2 import Argon2id
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives import serialization as ser

def raw_pub(sk): return sk.public_key().public_bytes(ser.Encoding.Raw, ser.PublicFormat.Raw)
def H(prefix, *parts):
    h = hashlib.sha256(prefix.encode() + b"\0")
    for p in parts: h.update(p)
    return h.digest()

code = 0x0123456789abcdef & ((1 << 60) - 1)
master = Argon2id(salt=b"peername-invitation-kdf-v1", length=32, iterations=3, lanes=4,
                  memory_cost=64 * 1024).derive(struct.pack(">Q", code))
sub = lambda l: H("peername-invite-" + l + "-v1", master)
signer = Ed25519PrivateKey.from_private_bytes(sub("sign"))
spub = raw_pub(signer)
auth = H("peername-authority-v1", spub)[:20]
label = base64.b32encode(auth).decode().lower().rstrip("=")
key = lambda cl: H("peername-name-v1", b"\x01", auth, cl)
print("signing public key:", spub.hex())
print("authority:", label)
print("invitation overlay key:", key(b"invitation").hex())
print("acceptance overlay key:", key(b"accepted").hex())
print("invitation encryption key:", sub("invitation").hex())
print("acceptance encryption key:", sub("acceptance").hex())

# The card: alice's record body (records/README.md), seq 0.
inviter = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
ipub = raw_pub(inviter)
iauth = H("peername-authority-v1", ipub)[:20]
issued = 1764072000; expires = issued + 1800
body = (b"\x01\x01" + iauth + bytes([5]) + b"alice" + ipub + struct.pack(">QQQ", 0, issued, expires)
        + b"\x01\x04" + bytes([192, 0, 2, 1])
        + b"\x01" + b"\x03ssh\x03tcp" + struct.pack(">HHH", 22, 0, 0)
        + b"\x00" + struct.pack(">H", 4) + bytes.fromhex("deadbeef"))
nonce = bytes(range(0x10, 0x20))
sig = inviter.sign(b"peername-invitation-card-v1\0" + auth + nonce + body)
plain = b"\x01" + nonce + body + sig
print("plaintext:", plain.hex())

def hchacha20(k, n):
    def rotl(v, c): return ((v << c) & 0xffffffff) | (v >> (32 - c))
    def qr(s, a, b, c, d):
        s[a] = (s[a] + s[b]) & 0xffffffff; s[d] = rotl(s[d] ^ s[a], 16)
        s[c] = (s[c] + s[d]) & 0xffffffff; s[b] = rotl(s[b] ^ s[c], 12)
        s[a] = (s[a] + s[b]) & 0xffffffff; s[d] = rotl(s[d] ^ s[a], 8)
        s[c] = (s[c] + s[d]) & 0xffffffff; s[b] = rotl(s[b] ^ s[c], 7)
    s = [0x61707865, 0x3320646e, 0x79622d32, 0x6b206574] + list(struct.unpack("<8I", k)) + list(struct.unpack("<4I", n))
    for _ in range(10):
        qr(s, 0, 4, 8, 12); qr(s, 1, 5, 9, 13); qr(s, 2, 6, 10, 14); qr(s, 3, 7, 11, 15)
        qr(s, 0, 5, 10, 15); qr(s, 1, 6, 11, 12); qr(s, 2, 7, 8, 13); qr(s, 3, 4, 9, 14)
    return struct.pack("<8I", *(s[0:4] + s[12:16]))

xn = bytes(range(0x20, 0x38))
subkey = hchacha20(sub("invitation"), xn[:16])
ad = b"peername-invitation-v1\0" + key(b"invitation")
ct = ChaCha20Poly1305(subkey).encrypt(b"\0\0\0\0" + xn[16:], plain, ad)
payload = b"\x01" + xn + ct
print("payload:", payload.hex())
seq = 1764072000000
obody = (b"\x01\x01" + auth + bytes([10]) + b"invitation" + spub + struct.pack(">QQQ", seq, issued, expires)
         + b"\x00\x00\x00" + struct.pack(">H", len(payload)) + payload)
print("record:", (obody + signer.sign(b"peername-record-v1\0" + obody)).hex())
