//! Outbox rows posted in a remote import job (the TLS Protect Cloud–style connector,
//! `crate::sync::tlspc`): written in one transaction right after the remote accepted the job,
//! deleted once the row's result is recorded. A row with a job is polled, never posted again,
//! so a crash between the post and the result cannot send a key twice.

use rusqlite::params;

use super::records::now;
use super::{Store, StoreError};

/// One outbox row inside a remote job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PostedRow {
    pub seq: i64,
    pub job_id: String,
    pub item: i64,
    pub cert_sha1: Option<String>,
    pub posted_at: crate::clock::Timestamp,
}

impl Store {
    /// The remote accepted job `job_id` holding these rows: (seq, item index, certificate SHA-1).
    pub fn sync_posted(&self, job_id: &str, rows: &[(i64, i64, Option<String>)]) -> Result<(), StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let at = now();
        for (seq, item, sha1) in rows {
            tx.execute(
                "INSERT INTO sync_remote_jobs(seq, job_id, item, cert_sha1, posted_at) VALUES (?1,?2,?3,?4,?5)
                 ON CONFLICT(seq) DO UPDATE SET job_id=excluded.job_id, item=excluded.item, cert_sha1=excluded.cert_sha1, posted_at=excluded.posted_at",
                params![seq, job_id, item, sha1, at],
            )?;
        }
        tx.commit()?;
        Ok(())
    }

    /// Every posted row whose outbox row is still pending (rows recorded since are dropped).
    pub fn sync_posted_rows(&self) -> Result<Vec<PostedRow>, StoreError> {
        let conn = self.conn();
        conn.execute("DELETE FROM sync_remote_jobs WHERE seq NOT IN (SELECT seq FROM sync_outbox)", [])?;
        let mut st = conn.prepare("SELECT seq, job_id, item, cert_sha1, posted_at FROM sync_remote_jobs ORDER BY job_id, item, seq")?;
        let rows = st
            .query_map([], |r| {
                Ok(PostedRow { seq: r.get(0)?, job_id: r.get(1)?, item: r.get(2)?, cert_sha1: r.get(3)?, posted_at: r.get(4)? })
            })?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    /// Forgets the job of these rows: they are posted again (the remote lost the job, or a
    /// refused row waits for `sync now`).
    pub fn sync_unpost(&self, seqs: &[i64]) -> Result<(), StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        for s in seqs {
            tx.execute("DELETE FROM sync_remote_jobs WHERE seq=?1", [s])?;
        }
        tx.commit()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::outbox::SyncScope;
    use crate::store::test_rows::{audit, key};

    #[test]
    fn posted_rows_follow_the_outbox() {
        let d = tempfile::tempdir().unwrap();
        let s = Store::open(&d.path().join("k.db")).unwrap();
        s.set_sync_scope(SyncScope(Some(vec!["*".into()])));
        s.commit_key(&key("01", "web", "a", true), &[], &audit(), None).unwrap();
        s.commit_key(&key("02", "web", "b", true), &[], &audit(), None).unwrap();
        let rows = s.sync_rows().unwrap();
        s.sync_posted("job-1", &[(rows[0].seq, 0, Some("AB".into())), (rows[1].seq, 1, None)]).unwrap();
        let p = s.sync_posted_rows().unwrap();
        assert_eq!(p.iter().map(|r| (r.job_id.as_str(), r.item)).collect::<Vec<_>>(), [("job-1", 0), ("job-1", 1)]);
        s.sync_done(rows[0].seq, None).unwrap();
        assert_eq!(s.sync_posted_rows().unwrap().len(), 1, "a recorded row leaves its job");
        s.sync_unpost(&[rows[1].seq]).unwrap();
        assert!(s.sync_posted_rows().unwrap().is_empty());
    }
}
