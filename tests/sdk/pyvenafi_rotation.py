"""Drives keyport's TPP rotation calls with Venafi's own Python SDK (pyvenafi's WebSDK, 1.0.x),
unchanged: KeysetDetails (POST and GET), Rotate, ExportSelfServicePrivateKey of the new key at
10350, ConfirmSelfServiceKeyInstallation, CancelRotation, RetryRotation, SkipKeyRotation.
Prints one JSON object with what it saw.

usage: pyvenafi_rotation.py HOST:PORT USERNAME PASSWORD ACCESS PASSPHRASE
"""
import json
import sys
import time

import urllib3
from pyvenafi.tpp.api.websdk.websdk import WebSDK

urllib3.disable_warnings()
host, username, password, access, passphrase = sys.argv[1:6]
out = {}
api = WebSDK(host=host, username=username, password=password, application_id="keyport-sdk", scope="ssh:manage")

listed = api.SSH.KeysetDetails.post(page_size=100)
ks = next(k for k in listed.data if k.access == access)
kid = ks.keyset_id
out["keyset_id"] = kid
out["listed_stage"] = ks.rotation_stage
out["listed_type"] = ks.type


def wait(stage, limit=30):
    start = time.time()
    while True:
        k = api.SSH.KeysetDetails.get(keyset_id=kid, load_key_data=True)
        if k.rotation_stage == stage:
            return k
        if time.time() - start > limit:
            raise SystemExit(f"keyset stayed at {k.rotation_stage}, wanted {stage}")
        time.sleep(0.1)


r = api.SSH.Rotate.post(keyset_id=kid, options=0)
out["rotate_ok"] = bool(r.response.success)
again = api.SSH.Rotate.post(keyset_id=kid, options=0)
out["rotate_again"] = [bool(again.response.success), again.response.error_code]
k = wait(10350)
out["waiting_status"] = str(k.process_status)
new_key = k.private_keys[0].key_id
out["private_keys"] = [p.key_id for p in k.private_keys]
exp = api.SSH.ExportSelfServicePrivateKey.post(key_id=new_key, format="OpenSSH", passphrase=passphrase)
out["export_ok"] = bool(exp.response.success)
out["exported"] = exp.key_material
conf = api.SSH.ConfirmSelfServiceKeyInstallation.post(keyset_id=kid)
out["confirm_ok"] = bool(conf.response.success)
k = wait(10600)
out["complete_fingerprint"] = k.fingerprint_sha256
out["last_rotation"] = str(k.last_rotation_date)

# A second rotation, skipped past its wait with SkipKeyRotation of the new key, then cancelled
# after completion: back to the previous version.
api.SSH.Rotate.post(keyset_id=kid, options=0)
k = wait(10350)
skip = api.SSH.SkipKeyRotation.post(key_id=k.private_keys[0].key_id)
out["skip_ok"] = bool(skip.response.success)
k = wait(10600)
out["second_fingerprint"] = k.fingerprint_sha256
cancel = api.SSH.CancelRotation.post(keyset_id=kid)
out["cancel_ok"] = bool(cancel.response.success)
time.sleep(0.5)
k = wait(10600)
out["after_cancel_fingerprint"] = k.fingerprint_sha256
retry = api.SSH.RetryRotation.post(keyset_id=kid)
out["retry_nothing"] = [bool(retry.response.success), retry.response.error_code]
print(json.dumps(out))
