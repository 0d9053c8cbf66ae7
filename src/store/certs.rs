//! Certificates as first-class inventory rows (certificate import, seed 001): where each one
//! lives in a token, what it is linked to, when it expires; and the certificate import jobs'
//! face-specific details (`jobs.detail`).

use rusqlite::{params, OptionalExtension};
use serde::Serialize;

use super::records::{insert_audit, insert_job_item, now};
use super::{AuditEntry, CertificateRecord, JobItem, JobRecord, Store, StoreError};

/// A certificate row with its token placement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredCertificate {
    pub record: CertificateRecord,
    pub token: Option<String>,
    pub cka_id: Option<Vec<u8>>,
    pub job_id: Option<String>,
}

/// What the native certificate views show.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct CertView {
    pub sha256: String,
    pub sha1: String,
    pub namespace: String,
    pub subject: String,
    pub issuer: String,
    pub serial: String,
    pub not_before: String,
    pub not_after: String,
    /// The key the certificate belongs to (same public key), if the inventory has it.
    pub key_id: Option<String>,
    pub key_name: Option<String>,
    pub token: Option<String>,
    /// Hex CKA_ID of the certificate object (the key's when linked).
    pub cka_id: Option<String>,
    pub created_at: crate::clock::Timestamp,
}

impl Store {
    pub fn stored_certificate(&self, sha256: &str) -> Result<Option<StoredCertificate>, StoreError> {
        let conn = self.conn();
        Ok(conn
            .query_row(
                "SELECT sha256, key_id, namespace, subject, issuer, serial, not_before, not_after, sha1, der, created_at, token, cka_id, job_id
                 FROM certificates WHERE sha256=?1",
                [sha256],
                |r| {
                    Ok(StoredCertificate {
                        record: CertificateRecord::from_row(r)?,
                        token: r.get(11)?,
                        cka_id: r.get(12)?,
                        job_id: r.get(13)?,
                    })
                },
            )
            .optional()?)
    }

    /// Records a certificate whose token object exists, its audit entry and its job item, in
    /// one transaction. `false` (and nothing but the job item written) when a row with the same
    /// SHA-256 appeared meanwhile.
    pub fn commit_certificate(&self, c: &StoredCertificate, audit: &AuditEntry, item: &JobItem) -> Result<bool, StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let r = &c.record;
        let n = tx.execute(
            "INSERT INTO certificates(sha256, key_id, namespace, subject, issuer, serial, not_before, not_after, sha1, der, created_at, token, cka_id, job_id)
             VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13,?14) ON CONFLICT(sha256) DO NOTHING",
            params![r.sha256, r.key_id, r.namespace, r.subject, r.issuer, r.serial, r.not_before, r.not_after, r.sha1, r.der, r.created_at, c.token, c.cka_id, c.job_id],
        )?;
        if n == 1 {
            insert_audit(&tx, audit)?;
            // A certificate for a key that syncs goes to the remote too, from this transaction.
            if let Some(key) = &r.key_id {
                super::outbox::on_certificate(&tx, &self.sync_scope(), key, &r.sha256)?;
            }
        }
        insert_job_item(&tx, item)?;
        tx.commit()?;
        Ok(n == 1)
    }

    /// Certificates stored as objects of their own in `token`: (SHA-256, CKA_ID).
    pub fn certificates_in_token(&self, token: &str) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let conn = self.conn();
        let mut st = conn.prepare("SELECT sha256, cka_id FROM certificates WHERE token=?1 AND cka_id IS NOT NULL")?;
        let rows = st.query_map([token], |r| Ok((r.get(0)?, r.get(1)?)))?.collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    /// Removes a certificate row whose token object is gone, with its audit entry.
    pub fn remove_certificate_row(&self, sha256: &str, audit: &AuditEntry) -> Result<bool, StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let n = tx.execute("DELETE FROM certificates WHERE sha256=?1", [sha256])?;
        insert_audit(&tx, audit)?;
        tx.commit()?;
        Ok(n > 0)
    }

    /// Certificates by namespace and expiry (`not_after` before an RFC 3339 time), soonest
    /// expiry first.
    pub fn list_certificates(&self, namespace: Option<&str>, expiring_before: Option<&str>) -> Result<Vec<CertView>, StoreError> {
        let conn = self.conn();
        let mut st = conn.prepare(
            "SELECT c.sha256, c.sha1, c.namespace, c.subject, c.issuer, c.serial, c.not_before, c.not_after, c.key_id, k.name,
                    COALESCE(c.token, k.token), COALESCE(c.cka_id, k.cka_id), c.created_at
             FROM certificates c LEFT JOIN keys k ON k.id = c.key_id
             WHERE (?1 IS NULL OR c.namespace=?1) AND (?2 IS NULL OR c.not_after < ?2)
             ORDER BY c.not_after, c.sha256",
        )?;
        let rows = st
            .query_map(params![namespace, expiring_before], |r| {
                Ok(CertView {
                    sha256: r.get(0)?,
                    sha1: r.get(1)?,
                    namespace: r.get(2)?,
                    subject: r.get(3)?,
                    issuer: r.get(4)?,
                    serial: r.get(5)?,
                    not_before: r.get(6)?,
                    not_after: r.get(7)?,
                    key_id: r.get(8)?,
                    key_name: r.get(9)?,
                    token: r.get(10)?,
                    cka_id: r.get::<_, Option<Vec<u8>>>(11)?.map(hex::encode),
                    created_at: r.get(12)?,
                })
            })?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    // --- certificate import jobs ---

    /// Records an accepted job with its face detail (JSON) and input, so it survives a restart.
    pub fn create_detailed_job(&self, j: &JobRecord, detail: &str, input: &[u8]) -> Result<(), StoreError> {
        self.conn().execute(
            "INSERT INTO jobs(id, kind, namespace, principal, status, created_at, total, failed, detail, input) VALUES (?1,?2,?3,?4,?5,?6,?7,0,?8,?9)",
            params![j.id, j.kind, j.namespace, j.principal, j.status, j.created_at, j.total, detail, input],
        )?;
        Ok(())
    }

    pub fn job_detail(&self, id: &str) -> Result<Option<String>, StoreError> {
        Ok(self.conn().query_row("SELECT detail FROM jobs WHERE id=?1", [id], |r| r.get(0)).optional()?.flatten())
    }

    /// Finishes a job: status, face detail, failed count from its items; drops the input.
    pub fn finish_detailed_job(&self, id: &str, status: super::JobStatus, detail: &str) -> Result<(), StoreError> {
        self.conn().execute(
            "UPDATE jobs SET status=?2, finished_at=?3, input=NULL, detail=?4,
               failed=(SELECT COUNT(*) FROM job_items WHERE job_id=?1 AND status='FAILED')
             WHERE id=?1",
            params![id, status, now(), detail],
        )?;
        Ok(())
    }
}
