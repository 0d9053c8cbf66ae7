"""Imports a key through keyport's TLS Protect Cloud face with Venafi's own Python client
(pyVenafi 1.0.x) and PyNaCl, exactly as against the SaaS. Prints one JSON line with what it saw.

usage: pyvenafi_import.py HOST:PORT API_KEY ENCRYPTED_KEY.pem CERT.pem PASSWORD
"""
import base64
import json
import sys
import time

import urllib3
from nacl.public import PublicKey, SealedBox
from pyvenafi.cloud.api.cloud_api import CloudApi
from pyvenafi.cloud.api.models import certificate_service

urllib3.disable_warnings()
server, api_key, key_file, cert_file, password = sys.argv[1:6]
api = CloudApi(server=server, api_key=api_key)

edges = api.edgemanagement_service.v1.edgeinstances.get(environmentId=None)
edges.assert_valid_response()
edge = edges.EdgeInstanceResponse.edgeInstances[0]
key = api.edgemanagement_service.v1.edgeencryptionkeys.ID(edge.encryptionKeyId).get()
key.assert_valid_response()
dek = key.EncryptionKeyInformation

sealed = base64.b64encode(SealedBox(PublicKey(base64.b64decode(dek.key))).encrypt(password.encode())).decode()
request = certificate_service.CertificateImportRequest(
    edgeInstanceId=edge.id,
    encryptionKeyId=edge.encryptionKeyId,
    importInformation=[
        certificate_service.CertificateImportInformation(
            certificate=open(cert_file).read(),
            passwordEncryptedPrivateKey=open(key_file).read(),
            dekEncryptedPassword=sealed,
        )
    ],
)
created = api.certificate_service.outagedetection.v1.certificates.imports.post(CertificateImportRequest=request)
created.assert_valid_response()
job_id = created.CertificateImportResponse.id
assert created.CertificateImportResponse.creationDate is not None

for _ in range(600):
    status = api.certificate_service.outagedetection.v1.certificates.imports.ID(job_id).get()
    status.assert_valid_response()
    detail = status.CertificateImportStatusDetailResponse
    if detail.status in ("COMPLETED", "FAILED"):
        break
    time.sleep(0.1)

print(json.dumps({
    "edge_status": str(edge.edgeStatus),
    "key_algorithm": str(dek.keyAlgorithm),
    "job_status": detail.status,
    "results": [{"status": r.status, "fingerprint": r.fingerprint, "reason": r.reason} for r in detail.results],
}))
