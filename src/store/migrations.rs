//! Schema migrations, applied in order at open. Version = `PRAGMA user_version`.
//! Append a new step for every change; never edit a step that has shipped.

use super::StoreError;
use rusqlite::Connection;

pub(crate) const STEPS: &[&str] = &[
    // 1: inventory, creation intents, jobs with per-item results, audit log.
    "CREATE TABLE keys(
        id TEXT PRIMARY KEY,            -- hex of CKA_ID: what `pkcs11-tool` shows as ID
        name TEXT NOT NULL,             -- CKA_LABEL
        namespace TEXT NOT NULL,
        owner TEXT NOT NULL,            -- principal that created it
        token TEXT NOT NULL,
        cka_id BLOB NOT NULL,
        algorithm TEXT NOT NULL,
        fingerprint TEXT NOT NULL,      -- sha256:<hex> of the SPKI DER
        exportable INTEGER NOT NULL,
        origin TEXT NOT NULL,           -- generated | imported
        created_at TEXT NOT NULL,
        UNIQUE(namespace, name)
     );
     CREATE INDEX keys_fingerprint ON keys(fingerprint);
     CREATE INDEX keys_token ON keys(token);
     CREATE TABLE intents(
        key_id TEXT PRIMARY KEY,
        token TEXT NOT NULL,
        cka_id BLOB NOT NULL,
        namespace TEXT NOT NULL,
        name TEXT NOT NULL,
        op TEXT NOT NULL,
        created_at TEXT NOT NULL
     );
     CREATE TABLE jobs(
        id TEXT PRIMARY KEY,
        kind TEXT NOT NULL,
        namespace TEXT,
        principal TEXT NOT NULL,
        status TEXT NOT NULL,
        created_at TEXT NOT NULL,
        finished_at TEXT,
        total INTEGER NOT NULL DEFAULT 0,
        failed INTEGER NOT NULL DEFAULT 0,
        detail TEXT                     -- face-specific JSON, never key material
     );
     CREATE TABLE job_items(
        job_id TEXT NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
        seq INTEGER NOT NULL,
        status TEXT NOT NULL,
        key_id TEXT,
        reason TEXT,
        PRIMARY KEY(job_id, seq)
     );
     CREATE TABLE audit(
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        at TEXT NOT NULL,
        principal TEXT NOT NULL,
        action TEXT NOT NULL,
        namespace TEXT,
        key_id TEXT,
        outcome TEXT NOT NULL,
        detail TEXT
     );",
    // 2: the edge instance's DEK (sealed under a token key), certificates, job inputs.
    "CREATE TABLE dek(
        id TEXT PRIMARY KEY,            -- encryptionKeyId (URL-safe)
        edge_instance_id TEXT NOT NULL,
        public_key BLOB NOT NULL,       -- X25519, 32 bytes
        sealed_secret BLOB NOT NULL,    -- AES-256-GCM under the token's at-rest key
        token TEXT NOT NULL,
        created_at TEXT NOT NULL
     );
     CREATE TABLE certificates(
        sha256 TEXT PRIMARY KEY,
        key_id TEXT,
        namespace TEXT NOT NULL,
        subject TEXT NOT NULL,
        issuer TEXT NOT NULL,
        serial TEXT NOT NULL,
        not_before TEXT NOT NULL,
        not_after TEXT NOT NULL,
        sha1 TEXT NOT NULL,
        der BLOB NOT NULL,              -- public data
        created_at TEXT NOT NULL
     );
     CREATE INDEX certificates_key ON certificates(key_id);
     ALTER TABLE jobs ADD COLUMN input BLOB;  -- still-encrypted items awaiting work; NULL when done
     ALTER TABLE job_items ADD COLUMN fingerprint TEXT;",
    // 3: project-key face (seed 004): a vendor key (project, name) and its deployments, one
    // inventory row per environment (`keys.name` = '<name>@<environment>', CKA_LABEL = name).
    "CREATE TABLE apiops_keys(
        project TEXT NOT NULL,
        name TEXT NOT NULL,             -- the vendor's key name: unique per project, immutable
        namespace TEXT NOT NULL,
        description TEXT,
        key_type TEXT NOT NULL,         -- SECRET_KEY | PRIVATE_KEY | PUBLIC_KEY
        algorithm TEXT NOT NULL,        -- AES | DES | DESede | RSA
        owner TEXT NOT NULL,
        created_at TEXT NOT NULL,
        PRIMARY KEY(project, name)
     );
     CREATE TABLE apiops_deployments(
        project TEXT NOT NULL,
        name TEXT NOT NULL,
        environment TEXT NOT NULL,
        key_id TEXT NOT NULL UNIQUE REFERENCES keys(id) ON DELETE CASCADE,
        alias TEXT,
        source TEXT NOT NULL,           -- how the material came: TEXT (JSON body) | FILE (import-file)
        created_at TEXT NOT NULL,
        PRIMARY KEY(project, name, environment),
        FOREIGN KEY(project, name) REFERENCES apiops_keys(project, name) ON DELETE CASCADE
     );",
    // 4: KPS face: key pair metadata per project; the key itself is the `keys` row (key_id),
    // NULL for a key pair holding only a public key (registered, or private key cleared).
    "CREATE TABLE kps_keypairs(
        id INTEGER PRIMARY KEY AUTOINCREMENT,   -- the vendor's int64 `id`
        project_id TEXT NOT NULL,
        name TEXT NOT NULL,
        key_id TEXT,                    -- keys.id while the private key is in a token
        public_key TEXT NOT NULL,       -- OpenSSH line (public data)
        fingerprint TEXT NOT NULL,      -- SHA256:… as ssh-keygen -lf prints it
        algorithm TEXT NOT NULL,
        type TEXT NOT NULL,             -- ssh | x509
        scope TEXT NOT NULL,            -- user | domain
        user_id TEXT,
        description TEXT NOT NULL DEFAULT '',
        protection TEXT,                -- default | kms; NULL without a private key
        kms_key_name TEXT,
        kms_key_id TEXT,
        private_key_cleared INTEGER NOT NULL DEFAULT 0,
        created_ms INTEGER NOT NULL,
        updated_ms INTEGER NOT NULL,
        UNIQUE(project_id, name)
     );
     CREATE INDEX kps_keypairs_key ON kps_keypairs(key_id);",
    // 5: sync outbox (changes waiting for the remote vault, written in the same transaction as
    // the change) and per-key sync state (what the vault confirmed).
    "CREATE TABLE sync_outbox(
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        key_id TEXT NOT NULL,
        namespace TEXT NOT NULL,
        name TEXT NOT NULL,
        op TEXT NOT NULL,               -- key | certificate | delete
        cert_sha256 TEXT,               -- for op = certificate
        created_at TEXT NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        last_error TEXT,
        permanent INTEGER NOT NULL DEFAULT 0,  -- 1: not retried until `sync now`
        next_attempt_at TEXT            -- NULL: at the next pass
     );
     CREATE INDEX sync_outbox_key ON sync_outbox(key_id, seq);
     CREATE TABLE sync_state(
        key_id TEXT PRIMARY KEY,
        namespace TEXT NOT NULL,
        name TEXT NOT NULL,
        vault_name TEXT,
        status TEXT NOT NULL,           -- synced | not_syncable | deleted
        pushed_version INTEGER,         -- transit key version holding this key
        pushed_at TEXT,
        detail TEXT
     );",
    // 6: TPP face — integer KeyIds for SSH keys (keyport ids are strings)
    "CREATE TABLE tpp_keys(
        key_id INTEGER PRIMARY KEY AUTOINCREMENT,
        keyport_id TEXT NOT NULL UNIQUE
     );",
    // 7: certificate import (seed 001): where each certificate object lives in the token
    //    (its own CKA_ID, or its key's), which job brought it, and lookups by expiry.
    "ALTER TABLE certificates ADD COLUMN token TEXT;
     ALTER TABLE certificates ADD COLUMN cka_id BLOB;     -- NULL: not in a token (e.g. a chain kept by a key import)
     ALTER TABLE certificates ADD COLUMN job_id TEXT;
     CREATE INDEX certificates_not_after ON certificates(not_after);
     CREATE INDEX certificates_namespace ON certificates(namespace, not_after);",
    // 8: sync to a TLS Protect Cloud–style remote: outbox rows posted in a remote import job,
    //    kept until the job's result is recorded, so a restart polls the job instead of posting
    //    the keys again.
    "CREATE TABLE sync_remote_jobs(
        seq INTEGER PRIMARY KEY,        -- sync_outbox.seq
        job_id TEXT NOT NULL,           -- the remote's import job
        item INTEGER NOT NULL,          -- index in the job's importInformation
        cert_sha1 TEXT,                 -- the certificate sent (the remote's result fingerprint)
        posted_at TEXT NOT NULL
     );
     CREATE INDEX sync_remote_jobs_job ON sync_remote_jobs(job_id, item);",
    // 9: TPP face OAuth sessions, so a restart does not log clients out. Only SHA-256 hashes of
    //    the (random, 192-bit) tokens are kept, never the tokens. `credential` is the hex SHA-256
    //    of the user's configured `password_sha256` at login (not the password hash itself): a
    //    session whose user is gone or whose password changed is refused and dropped.
    "CREATE TABLE tpp_sessions(
        access_sha256 BLOB PRIMARY KEY,
        refresh_sha256 BLOB NOT NULL UNIQUE,
        username TEXT NOT NULL,
        principal TEXT NOT NULL,
        credential TEXT NOT NULL,
        client_id TEXT NOT NULL,
        scope TEXT NOT NULL,
        granted INTEGER NOT NULL,       -- Unix seconds
        issued INTEGER NOT NULL,
        expires INTEGER NOT NULL,
        refresh_until INTEGER NOT NULL
     );",
    // 10: crash safety of deletes and of tokens that go away (issue 19). `keys.status`:
    //     active | missing (its token objects are gone; kept so restore can bring it back) |
    //     deleting (a delete intent is recorded; no longer listed or usable). A delete intent is
    //     written before the first token object goes and finished by reconcile or the
    //     background retry. `token_identity` remembers each configured token's serial, so a
    //     wiped or replaced token is recognised and never silently re-created.
    "ALTER TABLE keys ADD COLUMN status TEXT NOT NULL DEFAULT 'active';
     CREATE TABLE delete_intents(
        key_id TEXT PRIMARY KEY,
        token TEXT NOT NULL,
        cka_id BLOB NOT NULL,
        namespace TEXT NOT NULL,
        name TEXT NOT NULL,
        principal TEXT NOT NULL,
        created_at TEXT NOT NULL
     );
     CREATE TABLE token_identity(
        token TEXT PRIMARY KEY,         -- the configured token name
        label TEXT NOT NULL,
        serial TEXT NOT NULL,
        first_seen TEXT NOT NULL,
        last_seen TEXT NOT NULL
     );",
    // SSH certificates attached to keys (issue 14, `store::ssh_certs`): the ssh-agent lists a
    // key that has one also as its `*-cert-v01@openssh.com` identity. One per key; the
    // OpenSSH line as `ssh-keygen -s` wrote it (public data); removed with its key.
    "CREATE TABLE ssh_certificates(
        key_id TEXT PRIMARY KEY REFERENCES keys(id) ON DELETE CASCADE,
        certificate TEXT NOT NULL,
        attached_by TEXT NOT NULL,      -- principal
        attached_at TEXT NOT NULL
     );",
    // SSH keysets and their rotations (issue 13). A keyset is a name per namespace with
    //     ordered versions, each an inventory key; at most one version is active and one pending
    //     (partial unique indexes), at most one rotation per keyset is open. `rotations.stage` and
    //     `status` are TPP's RotationStage and ProcessStatus codes; every stage change is one
    //     transaction with its `rotation_history` lines (hook results, confirmations).
    "CREATE TABLE keysets(
        id TEXT PRIMARY KEY,            -- 40 hex: TPP's KeysetId
        namespace TEXT NOT NULL,
        name TEXT NOT NULL,
        type TEXT NOT NULL,             -- User | Host
        algorithm TEXT NOT NULL,
        owner TEXT NOT NULL,
        created_at TEXT NOT NULL,
        last_rotation_at TEXT,
        UNIQUE(namespace, name)
     );
     CREATE TABLE keyset_versions(
        keyset_id TEXT NOT NULL REFERENCES keysets(id),
        version INTEGER NOT NULL,
        key_id TEXT NOT NULL,
        state TEXT NOT NULL,            -- pending | active | retired | abandoned
        created_at TEXT NOT NULL,
        activated_at TEXT,
        retired_at TEXT,
        PRIMARY KEY(keyset_id, version)
     );
     CREATE UNIQUE INDEX keyset_versions_one_active ON keyset_versions(keyset_id) WHERE state='active';
     CREATE UNIQUE INDEX keyset_versions_one_pending ON keyset_versions(keyset_id) WHERE state='pending';
     CREATE INDEX keyset_versions_key ON keyset_versions(key_id);
     CREATE TABLE rotations(
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        keyset_id TEXT NOT NULL REFERENCES keysets(id),
        kind TEXT NOT NULL,             -- rotate | rollback
        stage INTEGER NOT NULL,
        status INTEGER NOT NULL,
        options INTEGER NOT NULL,
        principal TEXT NOT NULL,
        old_version INTEGER,
        new_version INTEGER,
        new_key_name TEXT,
        attempts INTEGER NOT NULL DEFAULT 0,
        next_attempt INTEGER,           -- Unix seconds
        stage_since INTEGER NOT NULL,   -- Unix seconds
        failed_stage INTEGER,
        error TEXT,
        started_at TEXT NOT NULL,
        finished_at TEXT,
        outcome TEXT
     );
     CREATE UNIQUE INDEX rotations_one_open ON rotations(keyset_id) WHERE finished_at IS NULL;
     CREATE TABLE rotation_history(
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        rotation_id INTEGER NOT NULL REFERENCES rotations(id),
        at TEXT NOT NULL,
        stage INTEGER NOT NULL,
        event TEXT NOT NULL,
        detail TEXT                     -- never key material
     );
     CREATE INDEX rotation_history_rotation ON rotation_history(rotation_id, seq);",
    // Keyset delete (issue 13): `deleting_at` marks a keyset whose delete is recorded (its
    //     version keys have delete intents); it is no longer listed or rotated, and its rows go
    //     in one transaction once every version key is gone (`store::keysets`), also after a
    //     crash (the rotation runner finishes it). `deleting_by` is who asked, for the audit.
    "ALTER TABLE keysets ADD COLUMN deleting_at TEXT;
     ALTER TABLE keysets ADD COLUMN deleting_by TEXT;",
    // Pages of `GET keys` (issue 17, `store::key_pages`): keyset pagination in the listing's
    // order (created_at, id), with and without a namespace filter, so a page costs the same
    // whatever its position and however many keys the store holds.
    "CREATE INDEX keys_listing ON keys(created_at, id);
     CREATE INDEX keys_namespace_listing ON keys(namespace, created_at, id);",
];

/// The schema version this build migrates to.
pub(super) const LATEST: i64 = STEPS.len() as i64;

pub fn migrate(conn: &Connection) -> Result<(), StoreError> {
    let current: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    let supported = LATEST;
    if current > supported {
        return Err(StoreError::TooNew { found: current, supported });
    }
    for (i, step) in STEPS.iter().enumerate().skip(current as usize) {
        let tx = conn.unchecked_transaction()?;
        tx.execute_batch(step)?;
        tx.pragma_update(None, "user_version", (i + 1) as i64)?;
        tx.commit()?;
        tracing::info!(version = i + 1, "store migrated");
    }
    Ok(())
}
