"""Drives keyport's TPP WebSDK SSH face with Venafi's own Python SDK (pyvenafi's WebSDK, 1.0.x),
unchanged, as against a TPP server: OAuth login, the SSH calls, and a second client that starts
from the first one's refresh token. Prints one JSON object with what it saw.

usage: pyvenafi_tpp.py HOST:PORT USERNAME PASSWORD PRIVATE_KEY_FILE PASSPHRASE
"""
import base64
import json
import sys

import urllib3
from pyvenafi.tpp.api.websdk.websdk import WebSDK

urllib3.disable_warnings()
host, username, password, key_file, passphrase = sys.argv[1:6]
out = {}

api = WebSDK(host=host, username=username, password=password, application_id="keyport-sdk",
             scope="ssh:manage,discover")
out["version"] = str(api.tpp_version)
out["token_header"] = "Authorization" if "Authorization" in api._session.request_kwargs["headers"] else "X-Venafi-API-Key"

keysets = api.SSH.KeysetDetails.post(page_size=100)
out["keysets"] = [
    {"keyset_id": k.keyset_id, "algorithm": k.algorithm, "length": k.length,
     "key_ids": [p.key_id for p in k.private_keys]}
    for k in keysets.data
]
first = out["keysets"][0]["key_ids"][0]

one = api.SSH.KeysetDetails.get(keyset_id=out["keysets"][0]["keyset_id"])
out["keyset_get"] = one.keyset_id

details = api.SSH.KeyDetails.post(key_ids=[first])
out["key_details_status"] = details.api_response.status_code

pub = api.SSH.ExportSelfServiceAuthorizedKey.post(key_id=first)
out["authorized_key"] = pub.key_material
out["authorized_ok"] = bool(pub.response.success)

priv = api.SSH.ExportSelfServicePrivateKey.post(key_id=first, format="OpenSSH", passphrase=passphrase)
out["private_ok"] = bool(priv.response.success)
out["private_key"] = priv.key_material

with open(key_file, "rb") as f:
    content = base64.b64encode(f.read()).decode()
imp = api.SSH.ImportPrivateKey.post(device_guid="{00000000-0000-0000-0000-000000000000}", filepath="/home/a/.ssh/id",
                                    format="OpenSSH", key_content_base_64=content, username="a")
out["import_ok"] = bool(imp.response.success)
out["imported_key_id"] = imp.key_id

# A second client from the refresh token alone (pyvenafi's refresh path).
again = WebSDK(host=host, username=username, password="not used", application_id="keyport-sdk",
               refresh_token=api._refresh_token)
out["refreshed_version"] = str(again.tpp_version)
refreshed = again.SSH.ExportSelfServiceAuthorizedKey.post(key_id=out["imported_key_id"])
out["refreshed_ok"] = bool(refreshed.response.success)
out["refreshed_key"] = refreshed.key_material
print(json.dumps(out))
