//! SSH keysets, their versions, and their rotations (issue 13). A keyset's versions are
//! ordinary inventory keys; a rotation is a row whose stage changes, each change one
//! transaction with its history entry and the version rows it moves, so a SIGKILL leaves the
//! rotation at one stage or the next, never between.

use rusqlite::{params, OptionalExtension, Row};
use serde::Serialize;

use super::records::{insert_audit, now};
use super::{AuditEntry, Store, StoreError};

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct KeysetRecord {
    /// 40 hex characters: TPP's `KeysetId`.
    pub id: String,
    pub namespace: String,
    pub name: String,
    /// `User` or `Host`.
    #[serde(rename = "type")]
    pub kind: String,
    pub algorithm: String,
    pub owner: String,
    pub created_at: crate::clock::Timestamp,
    pub last_rotation_at: Option<crate::clock::Timestamp>,
}

impl KeysetRecord {
    const COLUMNS: &'static str = "id, namespace, name, type, algorithm, owner, created_at, last_rotation_at";
    fn from_row(r: &Row) -> rusqlite::Result<Self> {
        Ok(KeysetRecord {
            id: r.get(0)?,
            namespace: r.get(1)?,
            name: r.get(2)?,
            kind: r.get(3)?,
            algorithm: r.get(4)?,
            owner: r.get(5)?,
            created_at: r.get(6)?,
            last_rotation_at: r.get(7)?,
        })
    }
}

/// One version: `pending` (being rotated in), `active` (one per keyset), `retired` (kept, and
/// kept in the vault), `abandoned` (a rotation rolled back before it became active; its key is
/// deleted).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct KeysetVersion {
    #[serde(skip)]
    pub keyset_id: String,
    pub version: i64,
    pub key_id: String,
    pub state: String,
    pub created_at: crate::clock::Timestamp,
    pub activated_at: Option<crate::clock::Timestamp>,
    pub retired_at: Option<crate::clock::Timestamp>,
}

impl KeysetVersion {
    const COLUMNS: &'static str = "keyset_id, version, key_id, state, created_at, activated_at, retired_at";
    fn from_row(r: &Row) -> rusqlite::Result<Self> {
        Ok(KeysetVersion {
            keyset_id: r.get(0)?,
            version: r.get(1)?,
            key_id: r.get(2)?,
            state: r.get(3)?,
            created_at: r.get(4)?,
            activated_at: r.get(5)?,
            retired_at: r.get(6)?,
        })
    }
}

/// A rotation (or, `kind = rollback`, the return to the previous version of a finished one).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct RotationRecord {
    pub id: i64,
    pub keyset_id: String,
    /// `rotate` or `rollback`.
    pub kind: String,
    /// TPP's RotationStage code.
    pub stage: i64,
    /// TPP's ProcessStatus.
    pub status: i64,
    /// TPP's Options bit mask.
    pub options: i64,
    pub principal: String,
    /// The version being replaced (rotate) or restored (rollback).
    pub old_version: Option<i64>,
    /// The version coming in (rotate) or going out (rollback).
    pub new_version: Option<i64>,
    /// The new version's key name, chosen before it is generated so a resumed rotation finds
    /// the key a crash left committed instead of making a second one.
    pub new_key_name: Option<String>,
    /// Failed attempts of the current stage.
    pub attempts: i64,
    /// Unix seconds before which the runner leaves it alone (retry backoff).
    pub next_attempt: Option<i64>,
    /// Unix seconds the current stage began (grace is counted from it).
    pub stage_since: i64,
    /// Set once a forward stage failed: the stage it failed in; the rollback ends there.
    pub failed_stage: Option<i64>,
    pub error: Option<String>,
    pub started_at: crate::clock::Timestamp,
    pub finished_at: Option<crate::clock::Timestamp>,
    /// `complete`, `failed` (rolled back after an error), `cancelled`, `rolled-back`.
    pub outcome: Option<String>,
}

impl RotationRecord {
    const COLUMNS: &'static str = "id, keyset_id, kind, stage, status, options, principal, old_version, new_version, new_key_name, \
         attempts, next_attempt, stage_since, failed_stage, error, started_at, finished_at, outcome";
    fn from_row(r: &Row) -> rusqlite::Result<Self> {
        Ok(RotationRecord {
            id: r.get(0)?,
            keyset_id: r.get(1)?,
            kind: r.get(2)?,
            stage: r.get(3)?,
            status: r.get(4)?,
            options: r.get(5)?,
            principal: r.get(6)?,
            old_version: r.get(7)?,
            new_version: r.get(8)?,
            new_key_name: r.get(9)?,
            attempts: r.get(10)?,
            next_attempt: r.get(11)?,
            stage_since: r.get(12)?,
            failed_stage: r.get(13)?,
            error: r.get(14)?,
            started_at: r.get(15)?,
            finished_at: r.get(16)?,
            outcome: r.get(17)?,
        })
    }
}

/// One line of a rotation's history: a stage entered, a hook's result, a confirmation.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct RotationEvent {
    pub at: crate::clock::Timestamp,
    pub stage: i64,
    pub event: String,
    pub detail: Option<String>,
}

/// What a stage change does to the version rows, in order (the one-active and one-pending
/// indexes hold after each statement, so a retirement comes before an activation).
#[derive(Debug, Clone)]
pub enum VersionChange {
    Add(KeysetVersion),
    State { version: i64, state: &'static str },
}

/// A keyset version as the ssh-agent sees it: its keyset, number, state, and the stage of the
/// keyset's open rotation (`None` when none is open).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionOffer {
    pub key_id: String,
    pub keyset_id: String,
    pub version: i64,
    pub state: String,
    pub open_stage: Option<i64>,
    pub open_kind: Option<String>,
}

impl Store {
    /// Every keyset version with its keyset's open rotation, for `core::sign::identities`.
    pub fn keyset_version_offers(&self) -> Result<Vec<VersionOffer>, StoreError> {
        let conn = self.conn();
        let mut st = conn.prepare(
            "SELECT v.key_id, v.keyset_id, v.version, v.state, r.stage, r.kind FROM keyset_versions v
             LEFT JOIN rotations r ON r.keyset_id = v.keyset_id AND r.finished_at IS NULL",
        )?;
        let rows = st
            .query_map([], |r| {
                Ok(VersionOffer {
                    key_id: r.get(0)?,
                    keyset_id: r.get(1)?,
                    version: r.get(2)?,
                    state: r.get(3)?,
                    open_stage: r.get(4)?,
                    open_kind: r.get(5)?,
                })
            })?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    /// A new keyset with its first (active) version and the audit entry, in one transaction.
    pub fn create_keyset(&self, k: &KeysetRecord, first: &KeysetVersion, audit: &AuditEntry) -> Result<(), StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let taken: bool =
            tx.query_row("SELECT EXISTS(SELECT 1 FROM keysets WHERE namespace=?1 AND name=?2)", params![k.namespace, k.name], |r| {
                r.get(0)
            })?;
        if taken {
            return Err(StoreError::NameTaken { namespace: k.namespace.clone(), name: k.name.clone() });
        }
        tx.execute(
            &format!("INSERT INTO keysets({}) VALUES (?1,?2,?3,?4,?5,?6,?7,?8)", KeysetRecord::COLUMNS),
            params![k.id, k.namespace, k.name, k.kind, k.algorithm, k.owner, k.created_at, k.last_rotation_at],
        )?;
        insert_version(&tx, first)?;
        // The first version's key (made just before, or adopted) is now a keyset version: its
        // vault record says so.
        super::outbox::on_keyset_version(&tx, &self.sync_scope(), &k.id, first.version)?;
        insert_audit(&tx, audit)?;
        tx.commit()?;
        Ok(())
    }

    pub fn keysets(&self) -> Result<Vec<KeysetRecord>, StoreError> {
        let conn = self.conn();
        let mut st =
            conn.prepare(&format!("SELECT {} FROM keysets WHERE deleting_at IS NULL ORDER BY namespace, name", KeysetRecord::COLUMNS))?;
        let rows = st.query_map([], KeysetRecord::from_row)?.collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    pub fn keyset(&self, id: &str) -> Result<Option<KeysetRecord>, StoreError> {
        let conn = self.conn();
        Ok(conn
            .query_row(
                &format!("SELECT {} FROM keysets WHERE id=?1 AND deleting_at IS NULL", KeysetRecord::COLUMNS),
                [id],
                KeysetRecord::from_row,
            )
            .optional()?)
    }

    pub fn keyset_by_name(&self, namespace: &str, name: &str) -> Result<Option<KeysetRecord>, StoreError> {
        let conn = self.conn();
        Ok(conn
            .query_row(
                &format!("SELECT {} FROM keysets WHERE namespace=?1 AND name=?2 AND deleting_at IS NULL", KeysetRecord::COLUMNS),
                [namespace, name],
                KeysetRecord::from_row,
            )
            .optional()?)
    }

    /// Versions, oldest first.
    pub fn keyset_versions(&self, keyset_id: &str) -> Result<Vec<KeysetVersion>, StoreError> {
        let conn = self.conn();
        let mut st =
            conn.prepare(&format!("SELECT {} FROM keyset_versions WHERE keyset_id=?1 ORDER BY version", KeysetVersion::COLUMNS))?;
        let rows = st.query_map([keyset_id], KeysetVersion::from_row)?.collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    /// The keyset version a key is, if it is one.
    pub fn keyset_version_of_key(&self, key_id: &str) -> Result<Option<KeysetVersion>, StoreError> {
        static SQL: std::sync::LazyLock<String> =
            std::sync::LazyLock::new(|| format!("SELECT {} FROM keyset_versions WHERE key_id=?1", KeysetVersion::COLUMNS));
        let conn = self.conn();
        let row = conn.prepare_cached(&SQL)?.query_row([key_id], KeysetVersion::from_row).optional()?;
        Ok(row)
    }

    /// Starts a rotation: fails with `Ok(None)` when the keyset already has an open one or
    /// its delete is recorded.
    pub fn start_rotation(&self, r: &RotationRecord, event: &RotationEvent) -> Result<Option<i64>, StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let blocked: bool = tx.query_row(
            "SELECT EXISTS(SELECT 1 FROM rotations WHERE keyset_id=?1 AND finished_at IS NULL)
                 OR EXISTS(SELECT 1 FROM keysets WHERE id=?1 AND deleting_at IS NOT NULL)",
            [&r.keyset_id],
            |x| x.get(0),
        )?;
        if blocked {
            return Ok(None);
        }
        tx.execute(
            "INSERT INTO rotations(keyset_id, kind, stage, status, options, principal, old_version, new_version, new_key_name,
                attempts, next_attempt, stage_since, failed_stage, error, started_at, finished_at, outcome)
             VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13,?14,?15,?16,?17)",
            params![
                r.keyset_id,
                r.kind,
                r.stage,
                r.status,
                r.options,
                r.principal,
                r.old_version,
                r.new_version,
                r.new_key_name,
                r.attempts,
                r.next_attempt,
                r.stage_since,
                r.failed_stage,
                r.error,
                r.started_at,
                r.finished_at,
                r.outcome
            ],
        )?;
        let id = tx.last_insert_rowid();
        insert_event(&tx, id, event)?;
        tx.commit()?;
        Ok(Some(id))
    }

    pub fn rotation(&self, id: i64) -> Result<Option<RotationRecord>, StoreError> {
        let conn = self.conn();
        Ok(conn
            .query_row(&format!("SELECT {} FROM rotations WHERE id=?1", RotationRecord::COLUMNS), [id], RotationRecord::from_row)
            .optional()?)
    }

    /// The keyset's latest rotation (open or not).
    pub fn last_rotation(&self, keyset_id: &str) -> Result<Option<RotationRecord>, StoreError> {
        let conn = self.conn();
        Ok(conn
            .query_row(
                &format!("SELECT {} FROM rotations WHERE keyset_id=?1 ORDER BY id DESC LIMIT 1", RotationRecord::COLUMNS),
                [keyset_id],
                RotationRecord::from_row,
            )
            .optional()?)
    }

    /// Every rotation not finished, oldest first (the runner resumes them at start).
    pub fn open_rotations(&self) -> Result<Vec<RotationRecord>, StoreError> {
        let conn = self.conn();
        let mut st = conn.prepare(&format!("SELECT {} FROM rotations WHERE finished_at IS NULL ORDER BY id", RotationRecord::COLUMNS))?;
        let rows = st.query_map([], RotationRecord::from_row)?.collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    /// The last `limit` events of a rotation, oldest first.
    pub fn rotation_history(&self, rotation_id: i64, limit: u32) -> Result<Vec<RotationEvent>, StoreError> {
        let conn = self.conn();
        let mut st = conn.prepare(
            "SELECT at, stage, event, detail FROM (SELECT seq, at, stage, event, detail FROM rotation_history WHERE rotation_id=?1
               ORDER BY seq DESC LIMIT ?2) ORDER BY seq",
        )?;
        let rows = st
            .query_map(params![rotation_id, limit], |r| {
                Ok(RotationEvent { at: r.get(0)?, stage: r.get(1)?, event: r.get(2)?, detail: r.get(3)? })
            })?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    /// A history line that changes no state (a hook's output while the stage goes on).
    pub fn rotation_event(&self, rotation_id: i64, event: &RotationEvent) -> Result<(), StoreError> {
        insert_event(&self.conn(), rotation_id, event)
    }

    /// One stage change: the rotation row becomes `next` if it is still at `from_stage` with
    /// `from_attempts` attempts (else `Ok(false)`: someone else moved it), with its history
    /// lines, version changes and audit entry, in one transaction. A finished rotation that
    /// completed also stamps the keyset's last rotation.
    pub fn rotation_step(
        &self,
        next: &RotationRecord,
        from_stage: i64,
        events: &[RotationEvent],
        versions: &[VersionChange],
        audit: Option<&AuditEntry>,
    ) -> Result<bool, StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let n = tx.execute(
            "UPDATE rotations SET stage=?2, status=?3, options=?4, old_version=?5, new_version=?6, new_key_name=?7, attempts=?8,
                next_attempt=?9, stage_since=?10, failed_stage=?11, error=?12, finished_at=?13, outcome=?14
             WHERE id=?1 AND stage=?15 AND finished_at IS NULL",
            params![
                next.id,
                next.stage,
                next.status,
                next.options,
                next.old_version,
                next.new_version,
                next.new_key_name,
                next.attempts,
                next.next_attempt,
                next.stage_since,
                next.failed_stage,
                next.error,
                next.finished_at,
                next.outcome,
                from_stage
            ],
        )?;
        if n == 0 {
            return Ok(false);
        }
        for e in events {
            insert_event(&tx, next.id, e)?;
        }
        let t = now();
        for v in versions {
            match v {
                VersionChange::Add(v) => insert_version(&tx, v)?,
                VersionChange::State { version, state } => {
                    let stamp = match *state {
                        "active" => "activated_at",
                        _ => "retired_at",
                    };
                    tx.execute(
                        &format!("UPDATE keyset_versions SET state=?3, {stamp}=?4 WHERE keyset_id=?1 AND version=?2"),
                        params![next.keyset_id, version, state, t],
                    )?;
                    // The vault's record of the key says which version it is and its state.
                    super::outbox::on_keyset_version(&tx, &self.sync_scope(), &next.keyset_id, *version)?;
                }
            }
        }
        if next.outcome.as_deref() == Some("complete") {
            tx.execute("UPDATE keysets SET last_rotation_at=?2 WHERE id=?1", params![next.keyset_id, t])?;
        }
        if let Some(a) = audit {
            insert_audit(&tx, a)?;
        }
        tx.commit()?;
        Ok(true)
    }
}

/// How a keyset delete could start (`Store::begin_keyset_delete`).
#[derive(Debug)]
pub enum KeysetDeleteStart {
    /// Recorded: the delete intents of its version keys (new ones, and any recorded before).
    Started(Vec<super::DeleteIntent>),
    /// A rotation is open: nothing was changed.
    RotationOpen { stage: i64 },
    /// No such keyset, or its delete is recorded already.
    Gone,
}

impl Store {
    /// Records the delete of keyset `id` asked by `principal`, in one transaction: refused
    /// while a rotation is open; else the keyset is marked deleting (no longer listed, found or
    /// rotated) and every version key still in the inventory gets a delete intent (the key
    /// delete's own machinery: its objects go next, then its row).
    pub fn begin_keyset_delete(&self, id: &str, principal: &str) -> Result<KeysetDeleteStart, StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let live: bool = tx.query_row("SELECT EXISTS(SELECT 1 FROM keysets WHERE id=?1 AND deleting_at IS NULL)", [id], |r| r.get(0))?;
        if !live {
            return Ok(KeysetDeleteStart::Gone);
        }
        let open: Option<i64> =
            tx.query_row("SELECT stage FROM rotations WHERE keyset_id=?1 AND finished_at IS NULL", [id], |r| r.get(0)).optional()?;
        if let Some(stage) = open {
            return Ok(KeysetDeleteStart::RotationOpen { stage });
        }
        tx.execute("UPDATE keysets SET deleting_at=?2, deleting_by=?3 WHERE id=?1", params![id, now(), principal])?;
        let keys: Vec<String> = {
            let mut st = tx.prepare("SELECT key_id FROM keyset_versions WHERE keyset_id=?1 ORDER BY version")?;
            let rows = st.query_map([id], |r| r.get(0))?.collect::<Result<Vec<_>, _>>()?;
            rows
        };
        for k in &keys {
            super::deletes::begin_delete_in(&tx, k, principal)?;
        }
        let intents = super::deletes::intents_in(&tx, &keys)?;
        tx.commit()?;
        Ok(KeysetDeleteStart::Started(intents))
    }

    /// Keysets whose delete is recorded and not finished: `(id, who asked)`.
    pub fn deleting_keysets(&self) -> Result<Vec<(KeysetRecord, String)>, StoreError> {
        let conn = self.conn();
        let mut st = conn.prepare(&format!(
            "SELECT {}, deleting_by FROM keysets WHERE deleting_at IS NOT NULL ORDER BY deleting_at",
            KeysetRecord::COLUMNS
        ))?;
        let rows = st
            .query_map([], |r| Ok((KeysetRecord::from_row(r)?, r.get::<_, Option<String>>(8)?.unwrap_or_default())))?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    /// Finishes a recorded keyset delete once none of its version keys is left in the
    /// inventory: its history, rotations, versions and row go with the audit entry, in one
    /// transaction. `Ok(false)` while a version key is still there (its delete not finished).
    pub fn finish_keyset_delete(&self, id: &str, audit: &AuditEntry) -> Result<bool, StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let left: bool =
            tx.query_row("SELECT EXISTS(SELECT 1 FROM keyset_versions v JOIN keys k ON k.id=v.key_id WHERE v.keyset_id=?1)", [id], |r| {
                r.get(0)
            })?;
        if left {
            return Ok(false);
        }
        tx.execute("DELETE FROM rotation_history WHERE rotation_id IN (SELECT id FROM rotations WHERE keyset_id=?1)", [id])?;
        tx.execute("DELETE FROM rotations WHERE keyset_id=?1", [id])?;
        tx.execute("DELETE FROM keyset_versions WHERE keyset_id=?1", [id])?;
        let n = tx.execute("DELETE FROM keysets WHERE id=?1 AND deleting_at IS NOT NULL", [id])?;
        if n > 0 {
            insert_audit(&tx, audit)?;
        }
        tx.commit()?;
        Ok(n > 0)
    }
}

fn insert_version(tx: &rusqlite::Connection, v: &KeysetVersion) -> Result<(), StoreError> {
    tx.execute(
        &format!("INSERT INTO keyset_versions({}) VALUES (?1,?2,?3,?4,?5,?6,?7)", KeysetVersion::COLUMNS),
        params![v.keyset_id, v.version, v.key_id, v.state, v.created_at, v.activated_at, v.retired_at],
    )?;
    Ok(())
}

fn insert_event(c: &rusqlite::Connection, rotation_id: i64, e: &RotationEvent) -> Result<(), StoreError> {
    c.execute(
        "INSERT INTO rotation_history(rotation_id, at, stage, event, detail) VALUES (?1,?2,?3,?4,?5)",
        params![rotation_id, e.at, e.stage, e.event, e.detail],
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (tempfile::TempDir, Store) {
        let d = tempfile::tempdir().unwrap();
        let s = Store::open(&d.path().join("k.db")).unwrap();
        (d, s)
    }

    fn audit() -> AuditEntry {
        AuditEntry {
            at: now(),
            principal: "t".into(),
            action: "keyset.create".into(),
            namespace: None,
            key_id: None,
            outcome: "ok".into(),
            detail: None,
        }
    }

    fn version(v: i64, state: &str) -> KeysetVersion {
        KeysetVersion {
            keyset_id: "ks".into(),
            version: v,
            key_id: format!("k{v}"),
            state: state.into(),
            created_at: now(),
            activated_at: None,
            retired_at: None,
        }
    }

    #[test]
    fn one_active_version_and_one_open_rotation() {
        let (_d, s) = store();
        let k = KeysetRecord {
            id: "ks".into(),
            namespace: "default".into(),
            name: "deploy".into(),
            kind: "User".into(),
            algorithm: "ed25519".into(),
            owner: "t".into(),
            created_at: now(),
            last_rotation_at: None,
        };
        s.create_keyset(&k, &version(1, "active"), &audit()).unwrap();
        assert!(matches!(s.create_keyset(&k, &version(1, "active"), &audit()), Err(StoreError::NameTaken { .. })));
        let r = RotationRecord {
            id: 0,
            keyset_id: "ks".into(),
            kind: "rotate".into(),
            stage: 0,
            status: 5,
            options: 0,
            principal: "t".into(),
            old_version: Some(1),
            new_version: None,
            new_key_name: None,
            attempts: 0,
            next_attempt: None,
            stage_since: 0,
            failed_stage: None,
            error: None,
            started_at: now(),
            finished_at: None,
            outcome: None,
        };
        let ev = RotationEvent { at: now(), stage: 0, event: "started".into(), detail: None };
        let id = s.start_rotation(&r, &ev).unwrap().unwrap();
        assert_eq!(s.start_rotation(&r, &ev).unwrap(), None, "a second open rotation is refused");
        // A second active version is refused by the store itself.
        let mut next = RotationRecord { id, stage: 10200, ..r.clone() };
        let bad = [VersionChange::Add(version(2, "active"))];
        assert!(s.rotation_step(&next, 0, &[], &bad, None).is_err());
        assert_eq!(s.rotation(id).unwrap().unwrap().stage, 0, "nothing of the failed step was kept");
        let ok = [VersionChange::Add(version(2, "pending"))];
        assert!(s.rotation_step(&next, 0, std::slice::from_ref(&ev), &ok, None).unwrap());
        assert!(!s.rotation_step(&next, 0, &[], &[], None).unwrap(), "a step from a stage it has left changes nothing");
        next.stage = 10600;
        next.outcome = Some("complete".into());
        next.finished_at = Some(now());
        let swap = [VersionChange::State { version: 1, state: "retired" }, VersionChange::State { version: 2, state: "active" }];
        assert!(s.rotation_step(&next, 10200, &[], &swap, None).unwrap());
        let states: Vec<_> = s.keyset_versions("ks").unwrap().into_iter().map(|v| v.state).collect();
        assert_eq!(states, ["retired", "active"]);
        assert!(s.keyset("ks").unwrap().unwrap().last_rotation_at.is_some());
        assert!(s.open_rotations().unwrap().is_empty());
        assert_eq!(s.rotation_history(id, 10).unwrap().len(), 2);
    }
}
