#!/bin/sh
# keyport's agentless device step, for a host that has only curl and sh: when the keyset waits
# at 10350 (WaitManualPrivateKeyConfirmation), log in to keyport's TPP face, export the new
# private key, install it (mode 0600, written to a temporary file in the same directory, synced,
# renamed), and confirm with ConfirmSelfServiceKeyInstallation. At any other stage it does
# nothing, so cron or the shipped systemd timer can run it often.
#
# Settings (environment, or a file named by $KEYPORT_DEVICE_CONF that sets them):
#   KEYPORT_TPP_URL          https://127.0.0.1:8750
#   KEYPORT_TPP_USER         the [[tpp.users]] username (its principal: export-private on the
#                            keyset's namespace)
#   KEYPORT_TPP_PASSWORD_FILE  file whose first line is the password (never on a command line)
#   KEYPORT_KEYSET_ID        the keyset's 40-hex KeysetId (`keyport keysets show NAME`)
#   KEYPORT_KEY_FILE         where the private key goes, e.g. ~/.ssh/id_ed25519
#   KEYPORT_PASSPHRASE_FILE  optional: export encrypted under this passphrase (first line);
#                            without it the namespace must allow unencrypted exports
#   KEYPORT_CA_FILE          optional: the CA (or keyport's own certificate) for curl
# Exit: 0 done or nothing to do; 1 an error (said on stderr).
set -eu
umask 077

[ -n "${KEYPORT_DEVICE_CONF:-}" ] && . "$KEYPORT_DEVICE_CONF"
: "${KEYPORT_TPP_URL:?set KEYPORT_TPP_URL}" "${KEYPORT_TPP_USER:?set KEYPORT_TPP_USER}"
: "${KEYPORT_TPP_PASSWORD_FILE:?set KEYPORT_TPP_PASSWORD_FILE}" "${KEYPORT_KEYSET_ID:?set KEYPORT_KEYSET_ID}"
: "${KEYPORT_KEY_FILE:?set KEYPORT_KEY_FILE}"

die() { echo "device-rotate: $*" >&2; exit 1; }

# JSON strings from our own inputs: only backslash and quote need escaping.
jstr() { printf '%s' "$1" | sed 's/\\/\\\\/g; s/"/\\"/g'; }

# curl with the bearer header and the body in a config on stdin, so no secret is ever on a
# command line (where `ps` shows it); prints the answer.
call() {
    set -- -sS --fail-with-body -X "$1" -H 'content-type: application/json' -K - "$KEYPORT_TPP_URL$2"
    [ -n "${KEYPORT_CA_FILE:-}" ] && set -- --cacert "$KEYPORT_CA_FILE" "$@"
    {
        [ -n "${token:-}" ] && printf 'header = "Authorization: Bearer %s"\n' "$token"
        [ -n "${body:-}" ] && printf 'data-binary = "%s"\n' "$(jstr "$body")"
        true
    } | curl "$@"
}

password=$(head -n 1 "$KEYPORT_TPP_PASSWORD_FILE") || die "cannot read $KEYPORT_TPP_PASSWORD_FILE"
body="{\"client_id\":\"keyport-device\",\"username\":\"$(jstr "$KEYPORT_TPP_USER")\",\"password\":\"$(jstr "$password")\",\"scope\":\"ssh:manage\"}"
token=
answer=$(call POST /vedauth/authorize/oauth) || die "login refused: $answer"
token=$(printf '%s' "$answer" | sed -n 's/.*"access_token":"\([^"]*\)".*/\1/p')
[ -n "$token" ] || die "no access token in the login answer"

body=
details=$(call GET "/vedsdk/SSH/KeysetDetails?KeysetId=$KEYPORT_KEYSET_ID") || die "KeysetDetails failed: $details"
# The keyset's own RotationStage is the last one in the answer (its keys' come first).
stage=$(printf '%s' "$details" | sed -n 's/.*"RotationStage":\([0-9]*\).*/\1/p')
[ -n "$stage" ] || die "no RotationStage for keyset $KEYPORT_KEYSET_ID: $details"
if [ "$stage" != 10350 ]; then
    echo "device-rotate: keyset at stage $stage; nothing to do"
    exit 0
fi
# The pending (new) key is the first private key listed.
key_id=$(printf '%s' "$details" | sed -n 's/.*"PrivateKeys":\[{[^]]*"KeyId":\([0-9]*\).*/\1/p')
[ -n "$key_id" ] || die "no new private key listed"

pass=
[ -n "${KEYPORT_PASSPHRASE_FILE:-}" ] && pass=$(head -n 1 "$KEYPORT_PASSPHRASE_FILE")
body="{\"KeyId\":$key_id,\"Format\":\"OpenSSH\",\"Passphrase\":\"$(jstr "$pass")\"}"
answer=$(call POST /vedsdk/SSH/ExportSelfServicePrivateKey) || die "export failed"
case $answer in *'"Success":true'*) ;; *) die "export refused: $(printf '%s' "$answer" | sed -n 's/.*"ErrorMessage":"\([^"]*\)".*/\1/p')" ;; esac
dir=$(dirname "$KEYPORT_KEY_FILE")
tmp=$(mktemp "$dir/.keyport-key.XXXXXX")
trap 'rm -f "$tmp"' EXIT
# KeyMaterial is PEM-like text whose newlines JSON wrote as \n.
printf '%s' "$answer" | sed -n 's/.*"KeyMaterial":"\([^"]*\)".*/\1/p' | sed 's/\\n/\
/g' > "$tmp"
grep -q 'PRIVATE KEY-----' "$tmp" || die "the export answer held no private key"
chmod 600 "$tmp"
sync "$tmp"
mv -f "$tmp" "$KEYPORT_KEY_FILE"
sync "$dir"
trap - EXIT

body="{\"KeysetId\":\"$(jstr "$KEYPORT_KEYSET_ID")\"}"
answer=$(call POST /vedsdk/SSH/ConfirmSelfServiceKeyInstallation) || die "confirm failed: $answer"
case $answer in *'"Success":true'*) ;; *) die "confirm refused: $answer" ;; esac
echo "device-rotate: installed key $key_id in $KEYPORT_KEY_FILE and confirmed"
