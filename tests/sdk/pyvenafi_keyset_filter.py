"""POST SSH/KeysetDetails with Venafi's own Python SDK (pyvenafi's WebSDK, 1.0.x), unchanged:
KeysetFilter (pyvenafi's KeySetFilter model, sent as the list the SDK types it as), LoadKeyData,
Offset and PageSize. Prints one JSON object: for each query, the `Access` of every keyset listed
(and, for LoadKeyData, how many private keys each carries).

usage: pyvenafi_keyset_filter.py HOST:PORT USERNAME PASSWORD FINGERPRINT_SHA256
"""
import json
import sys

import urllib3
from pyvenafi.tpp.api.websdk.models import ssh as m
from pyvenafi.tpp.api.websdk.websdk import WebSDK

urllib3.disable_warnings()
host, username, password, fingerprint = sys.argv[1:5]
api = WebSDK(host=host, username=username, password=password, application_id="keyport-sdk", scope="ssh:manage")


def access(**kw):
    r = api.SSH.KeysetDetails.post(**kw)
    return sorted(k.access or "" for k in r.data)


out = {
    "all": access(page_size=100),
    "host": access(page_size=100, keyset_filter=[m.KeySetFilter(type="Host")]),
    "ecdsa_384": access(page_size=100, keyset_filter=[m.KeySetFilter(algorithm=["ECDSA"], length=[384])]),
    "suspended": access(page_size=100, keyset_filter=[m.KeySetFilter(process_statuses=[8])]),
    "fingerprint": access(page_size=100, keyset_filter=[m.KeySetFilter(fingerprints_sha256=[fingerprint])]),
    "user_or_host": access(page_size=100, keyset_filter=[m.KeySetFilter(type="Host"), m.KeySetFilter(type="User")]),
    "page_2_of_1": access(page_size=1, offset=1),
}
bare = api.SSH.KeysetDetails.post(page_size=100, load_key_data=False)
out["bare_private_keys"] = [len(k.private_keys or []) for k in bare.data]
full = api.SSH.KeysetDetails.post(page_size=100, load_key_data=True)
out["full_private_keys"] = [len(k.private_keys or []) for k in full.data]
print(json.dumps(out))
