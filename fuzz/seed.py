"""Seeds for the fuzz targets whose inputs are not key files (called by `scripts/fuzz seed`).

CORPUS is fuzz/corpus, WORK the directory where `scripts/fuzz seed` left the keys and
certificates it made (password "fuzz").
"""

import base64
import hashlib
import hmac
import io
import os
import struct
import zipfile

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

C = os.environ["CORPUS"]
W = os.environ["WORK"]


def put(target, name, data):
    os.makedirs(os.path.join(C, target), exist_ok=True)
    with open(os.path.join(C, target, name), "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())


def read(name):
    with open(os.path.join(W, name), "rb") as f:
        return f.read()


def der_body(pem):
    lines = [l for l in pem.decode().splitlines() if l and not l.startswith("-----")]
    return "".join(lines)


# --- certificate bundles ----------------------------------------------------------------------
xml = "<certificates>\n" + "".join(
    f"  <certificate><pem>{der_body(read(n))}</pem><name>x</name></certificate>\n" for n in ("ca.pem", "leaf.pem")
) + "</certificates>\n"
put("xml_bundle", "two.xml", '<?xml version="1.0" encoding="UTF-8"?>\n' + xml)
put("xml_bundle", "cdata.xml", f"<certificates><certificate><pem><![CDATA[{der_body(read('ca.pem'))}]]></pem></certificate></certificates>")
put("xml_bundle", "empty.xml", "<certificates><certificate/></certificates>")


def zipped(files, method=zipfile.ZIP_DEFLATED):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", method) as z:
        for name, data in files:
            z.writestr(name, data)
    return buf.getvalue()


put("zip_bundle", "pem.zip", zipped([("ca.pem", read("ca.pem")), ("dir/chain.pem", read("chain.pem"))]))
put("zip_bundle", "xml.zip", zipped([("bundle.xml", xml)]))
put("zip_bundle", "stored.zip", zipped([("leaf.pem", read("leaf.pem"))], zipfile.ZIP_STORED))

# --- DEK sealed box: 0 + a plaintext the target seals itself; a random "box" -------------------
for n in ("ed25519.p8.der", "p256.sec1.der", "rsa.p8enc.pem"):
    put("dek_sealed_box", "plain-" + n, b"\0" + read(n))
put("dek_sealed_box", "box", bytes(range(1, 81)))

# --- KPS SDK-HMAC-SHA256: a correctly signed request and variations --------------------------
def quote(s):
    return "".join(c if c.isalnum() or c in "_.-~" else "%{:02X}".format(ord(c)) for c in s)


def kps(method, path, query, body, extra):
    date = "20261203T120000Z"
    headers = {"host": "localhost", "x-sdk-date": date}
    headers.update(extra)
    signed = sorted(headers)
    cpath = "/".join(quote(seg) for seg in path.split("/"))
    if not cpath.endswith("/"):
        cpath += "/"
    pairs = sorted(tuple(p.split("=", 1)) if "=" in p else (p, "") for p in query.split("&") if p)
    cquery = "&".join(f"{quote(k)}={quote(v)}" for k, v in pairs)
    canon = "\n".join([method, cpath, cquery, "".join(f"{h}:{headers[h]}\n" for h in signed), ";".join(signed),
                       hashlib.sha256(body).hexdigest()])
    to_sign = "SDK-HMAC-SHA256\n" + date + "\n" + hashlib.sha256(canon.encode()).hexdigest()
    sig = hmac.new(b"fuzz-secret-key", to_sign.encode(), hashlib.sha256).hexdigest()
    auth = f"SDK-HMAC-SHA256 Access=AKFUZZ, SignedHeaders={';'.join(signed)}, Signature={sig}"
    rest = "".join(f"{h}: {v}\n" for h, v in extra.items())
    return b"\0".join([auth.encode(), method.encode(), path.encode(), query.encode(), date.encode(), body, rest.encode()])


put("kps_signature", "get", kps("GET", "/v1.0/fuzz/kms/list-keys", "limit=10&marker=a%20b", b"", {}))
put("kps_signature", "post", kps("POST", "/v3/fuzz/kps/keypairs", "", b'{"keypair":{"name":"k"}}',
                                 {"content-type": "application/json", "x-project-id": "fuzz"}))

# --- multipart (import-file): boundary line, then the body -----------------------------------
def form(boundary, fields):
    out = b""
    for name, value, filename in fields:
        disp = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
        out += f"--{boundary}\r\nContent-Disposition: {disp}\r\n\r\n".encode() + value + b"\r\n"
    return boundary.encode() + b"\n" + out + f"--{boundary}--\r\n".encode()


put("multipart", "private", form("XyZ", [("keyName", b"k1", None), ("keyType", b"PRIVATE_KEY", None),
                                         ("environmentList", b"dev,prod", None),
                                         ("keyFile", base64.b64encode(read("rsa.pem")), "k.pem")]))
put("multipart", "public", form("b0undary", [("keyType", b"PUBLIC_KEY", None), ("algorithm", b"rsa", None),
                                             ("keyFile", read("rsa.cert.pem"), "k.pem")]))
put("multipart", "secret", form("s", [("keyType", b"SECRET_KEY", None), ("keyFile", base64.b64encode(b"k" * 32), None)]))

# --- JSON bodies and queries of each face (first byte: the face) -----------------------------
json_seeds = {
    0: ['{"format":"openssh","passphrase":"correct horse"}', '{"name":"k","namespace":"ns","algorithm":"ec-p256","exportable":true}',
        "namespace=ns&name=k"],
    1: ['{"data":"aGVsbG8=","algorithm":"ecdsa-sha256"}'],
    2: ['{"wait_secs":5}', '{"cn":"host","dns":["a.example","*.b.example"]}', '{"dry_run":true}'],
    3: ['{"edgeInstanceId":"e","encryptionKeyId":"k","importInformation":[{"dekEncryptedPrivateKey":"AAAA","certificate":"-----BEGIN CERTIFICATE-----"},'
        '{"passwordEncryptedPrivateKey":"-----BEGIN ENCRYPTED PRIVATE KEY-----","dekEncryptedPassword":"AAAA"}]}',
        "edgeInstanceId=e"],
    4: ["namespace=ns&expiring_before=2026-01-31", "expiring_before=2026-01-31T12:00:00.5%2B02:00"],
    5: ['{"name":"k","keyType":"SECRET_KEY","algorithm":"AES","cryptoKeyInfoEnvironmentList":[{"environmentName":"dev","content":"'
        + base64.b64encode(b"k" * 16).decode() + '"}]}',
        '{"name":"p","keyType":"PUBLIC_KEY","cryptoKeyInfoEnvironmentList":[{"environmentName":"dev","content":"'
        + base64.b64encode(read("rsa.cert.pem")).decode() + '"}]}'],
}
for face, seeds in json_seeds.items():
    for i, s in enumerate(seeds):
        put("json_requests", f"face{face}-{i}", bytes([face]) + s.encode())
put("json_requests", "job-input", b"\0" + b'{"namespace":"ns","exportable":null,"items":[{"certificate":null,"password_encrypted_private_key":null,'
    b'"dek_encrypted_private_key":"AAAA","dek_encrypted_password":null,"pkcs12_keystore":null}]}')

# --- ssh-agent messages (type byte and payload) ----------------------------------------------
def s(b):
    return struct.pack(">I", len(b)) + b


sk = ed25519.Ed25519PrivateKey.generate()
seed = sk.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption())
pub = sk.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
blob = s(b"ssh-ed25519") + s(pub)
put("agent_message", "add-ed25519", bytes([17]) + s(b"ssh-ed25519") + s(pub) + s(seed + pub) + s(b"alice@host"))
put("agent_message", "add-constrained", bytes([25]) + s(b"ssh-ed25519") + s(pub) + s(seed + pub) + s(b"c") + bytes([1]) + struct.pack(">I", 60))
put("agent_message", "identities", bytes([11]))
put("agent_message", "sign", bytes([13]) + s(blob) + s(b"data to sign") + struct.pack(">I", 0))
put("agent_message", "remove", bytes([18]) + s(blob))
put("agent_message", "extension", bytes([27]) + s(b"session-bind@openssh.com") + s(blob))
