"""Drives keyport's KPS face with the vendor's own Python SDK (huaweicloudsdkkps).

usage: kps_sdk.py ENDPOINT PROJECT_ID AUTH OP [JSON_ARGS]
  AUTH: aksk:<AK>:<SK> (BasicCredentials, SDK-HMAC-SHA256) or token:<X-Auth-Token>
Prints one JSON object: {"ok": <response as a dict>} or {"error": {status, error_code, error_msg}}.
"""
import json
import sys

from huaweicloudsdkcore.auth.credentials import BasicCredentials
from huaweicloudsdkcore.exceptions import exceptions
from huaweicloudsdkcore.http.http_config import HttpConfig
from huaweicloudsdkcore.signer.signer import Signer
from huaweicloudsdkkps.v3 import *  # noqa: F401,F403
from huaweicloudsdkkps.v3 import KpsClient


def token_credentials(token, project_id):
    """IAM token authentication: X-Auth-Token instead of an AK/SK signature. The client
    builder accepts only BasicCredentials, so the instance's signing step is replaced."""
    creds = BasicCredentials("unused", "unused", project_id)

    def process_auth_request(request, http_client):
        request.header_params["X-Auth-Token"] = token
        Signer.process_request_uri(request)  # what signing does besides the signature
        return http_client.executor.submit(lambda r: r, request)

    creds.process_auth_request = process_auth_request
    return creds


def client(endpoint, project_id, auth):
    kind, _, rest = auth.partition(":")
    if kind == "aksk":
        ak, _, sk = rest.partition(":")
        creds = BasicCredentials(ak, sk, project_id)
    else:
        creds = token_credentials(rest, project_id)
    config = HttpConfig.get_default_config()
    config.ignore_ssl_verification = True
    config.retry_times = 0
    return KpsClient.new_builder().with_http_config(config).with_credentials(creds).with_endpoints([endpoint]).build()


def protection(a):
    if "private_key" not in a and "encryption" not in a:
        return None
    enc = a.get("encryption", {"type": "default"})
    return KeyProtection(private_key=a.get("private_key"), encryption=Encryption(**enc))


def create_action(a):
    return CreateKeypairAction(name=a["name"], type=a.get("type"), public_key=a.get("public_key"), scope=a.get("scope"),
                               user_id=a.get("user_id"), key_protection=protection(a))


def run(c, op, a):
    if op == "create":
        return c.create_keypair(CreateKeypairRequest(body=CreateKeypairRequestBody(keypair=create_action(a))))
    if op == "import":
        enc = a.get("encryption", {"type": "default"})
        bean = ImportPrivateKeyKeypairBean(name=a["name"], user_id=a.get("user_id"), key_protection=ImportPrivateKeyProtection(
            private_key=a["private_key"], encryption=Encryption(**enc)))
        return c.import_private_key(ImportPrivateKeyRequest(body=ImportPrivateKeyRequestBody(keypair=bean)))
    if op == "list":
        return c.list_keypairs(ListKeypairsRequest(limit=a.get("limit"), marker=a.get("marker")))
    if op == "show":
        return c.list_keypair_detail(ListKeypairDetailRequest(keypair_name=a["name"]))
    if op == "update":
        return c.update_keypair_description(UpdateKeypairDescriptionRequest(
            keypair_name=a["name"], body=UpdateKeypairDescriptionRequestBody(keypair=UpdateKeypairDescriptionReq(description=a["description"]))))
    if op == "delete":
        return c.delete_keypair(DeleteKeypairRequest(keypair_name=a["name"]))
    if op == "clear":
        return c.clear_private_key(ClearPrivateKeyRequest(keypair_name=a["name"]))
    if op == "export":
        return c.export_private_key(ExportPrivateKeyRequest(body=ExportPrivateKeyRequestBody(keypair=KeypairBean(name=a["name"]))))
    if op == "batch_import":
        return c.batch_import_keypair(BatchImportKeypairRequest(body=[CreateKeypairRequestBody(keypair=create_action(x)) for x in a["items"]]))
    if op == "running_tasks":
        return c.list_running_task(ListRunningTaskRequest())
    if op == "failed_tasks":
        return c.list_failed_task(ListFailedTaskRequest())
    raise SystemExit("unknown op " + op)


def main():
    endpoint, project_id, auth, op = sys.argv[1:5]
    args = json.loads(sys.argv[5]) if len(sys.argv) > 5 else {}
    try:
        resp = run(client(endpoint, project_id, auth), op, args)
        out = {"ok": resp.to_json_object(), "status": resp.status_code}
    except exceptions.ClientRequestException as e:
        out = {"error": {"status": e.status_code, "error_code": e.error_code, "error_msg": e.error_msg}}
    except exceptions.ServerResponseException as e:
        out = {"error": {"status": e.status_code, "error_code": e.error_code, "error_msg": e.error_msg}}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
