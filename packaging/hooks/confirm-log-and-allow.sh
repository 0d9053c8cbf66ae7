#!/bin/sh
# An example confirm hook for keyport's ssh-agent and sign API ([agent.namespaces.NS] confirm =
# ["/etc/keyport/hooks/confirm-log-and-allow.sh"]). keyport runs it before each signature with
# the namespace's keys, with no shell, an empty environment except PATH and these variables:
#   KEYPORT_PRINCIPAL KEYPORT_KEY_ID KEYPORT_KEY_NAME KEYPORT_NAMESPACE KEYPORT_VIA
#   KEYPORT_UID KEYPORT_PID KEYPORT_DATA_KIND KEYPORT_SSH_USER
# Exit 0 allows the signature; anything else (or running past agent.confirm_timeout_secs)
# refuses it. Output is captured into keyport's log.
#
# This one logs every request to the journal and allows only the principals listed in
# ALLOWED below. Copy it to /etc/keyport/hooks/, adjust, and make it executable.
set -eu
ALLOWED="root deploy"
logger -t keyport-confirm -- "sign request: principal=${KEYPORT_PRINCIPAL:-?} key=${KEYPORT_KEY_NAME:-?} namespace=${KEYPORT_NAMESPACE:-?} via=${KEYPORT_VIA:-?} uid=${KEYPORT_UID:-?}" || true
for p in $ALLOWED; do
    [ "${KEYPORT_PRINCIPAL:-}" = "$p" ] && exit 0
done
echo "principal ${KEYPORT_PRINCIPAL:-?} is not in ALLOWED" >&2
exit 1
