//! Group commit for the writes of key creation (`create.rs`: intents, then the key's rows), each
//! of which must be durable (`synchronous=FULL`: an fsync of the WAL) before its caller goes on.
//! An fsync costs milliseconds (≈ 6 ms on the CI machine under load) where the writes cost
//! microseconds, so under load creations queue on the fsync, not on the token.
//!
//! A writer queues its work, then takes the store's connection. Whoever holds it runs every
//! queued work in one transaction, each inside a savepoint of its own (a work that fails is
//! rolled back alone and gets its own error, the others go on), commits once, and tells each
//! writer how it went. A writer whose work someone else committed returns at once; none
//! returns before the commit holding its work is durable, and a failed commit fails every work
//! in it.

use rusqlite::Connection;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex, OnceLock};

use super::{Store, StoreError};

/// How a group's commit went: `Err` carries SQLite's code and message (each writer rebuilds
/// its own `StoreError` from it).
type Outcome = Result<(), (rusqlite::ffi::Error, String)>;

/// A queued work: runs inside its savepoint and keeps its own result.
type Work = Box<dyn FnOnce(&Connection) + Send>;

#[derive(Default)]
pub(super) struct GroupQueue {
    works: Mutex<VecDeque<(Work, Arc<OnceLock<Outcome>>)>>,
}

impl std::fmt::Debug for GroupQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupQueue").field("queued", &self.works.lock().map(|w| w.len()).unwrap_or(0)).finish()
    }
}

impl Store {
    /// Runs `work` in a durable transaction, shared with the works other writers queued at the
    /// same moment (see the module's comment). `work` sees the effects of the works before it in
    /// the group; its error rolls back only its own writes.
    pub(super) fn grouped<T, F>(&self, work: F) -> Result<T, StoreError>
    where
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
        T: Send + 'static,
    {
        let result: Arc<Mutex<Option<Result<T, StoreError>>>> = Arc::new(Mutex::new(None));
        let mine = Arc::new(OnceLock::new());
        let slot = result.clone();
        let queued: Work = Box::new(move |conn| {
            let r = in_savepoint(conn, work);
            *slot.lock().expect("poisoned") = Some(r);
        });
        self.group.works.lock().expect("poisoned").push_back((queued, mine.clone()));
        let conn = self.conn();
        if mine.get().is_none() {
            // Not run yet, so still queued (works leave the queue only under this lock).
            let batch: Vec<_> = self.group.works.lock().expect("poisoned").drain(..).collect();
            // Every writer of the group hears the outcome, also when BEGIN itself fails (a
            // store locked by another process): a writer without one would panic.
            let (works, slots): (Vec<_>, Vec<_>) = batch.into_iter().unzip();
            let committed = (|| -> Result<(), StoreError> {
                conn.execute_batch("BEGIN IMMEDIATE")?;
                for work in works {
                    work(&conn);
                    // An I/O fault, a full disk or a lock can end the whole transaction: every
                    // work in it is lost, and those not run yet are not run.
                    if conn.is_autocommit() {
                        return Err(StoreError::Unavailable(
                            "the store's transaction was rolled back by a fault; nothing of this group was written".into(),
                        ));
                    }
                }
                conn.execute_batch("COMMIT")?;
                Ok(())
            })();
            if committed.is_err() && !conn.is_autocommit() {
                let _ = conn.execute_batch("ROLLBACK");
            }
            let shared: Outcome = committed.map_err(|e| match e {
                StoreError::Sqlite(rusqlite::Error::SqliteFailure(code, msg)) => {
                    (code, msg.unwrap_or_else(|| "the group commit failed".into()))
                }
                other => (rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_IOERR), other.to_string()),
            });
            for slot in &slots {
                let _ = slot.set(shared.clone());
            }
        }
        drop(conn);
        let own = result.lock().expect("poisoned").take();
        match (mine.get().expect("set by the group's leader"), own) {
            // The work's own refusal (rolled back alone) is its answer whatever the commit did.
            (_, Some(Err(e))) => Err(e),
            (Ok(()), Some(Ok(v))) => Ok(v),
            (Ok(()), None) => Err(StoreError::Unavailable("the group commit did not run this write".into())),
            (Err((code, msg)), _) => Err(StoreError::Sqlite(rusqlite::Error::SqliteFailure(*code, Some(msg.clone())))),
        }
    }
}

/// `work` inside a savepoint: released when it succeeds, rolled back (alone) when it fails.
fn in_savepoint<T>(conn: &Connection, work: impl FnOnce(&Connection) -> Result<T, StoreError>) -> Result<T, StoreError> {
    conn.prepare_cached("SAVEPOINT grouped")?.execute([])?;
    match work(conn) {
        Ok(v) => {
            conn.prepare_cached("RELEASE grouped")?.execute([])?;
            Ok(v)
        }
        Err(e) => {
            if !conn.is_autocommit() {
                let _ = conn.execute_batch("ROLLBACK TO grouped; RELEASE grouped");
            }
            Err(e)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::Store;
    use super::StoreError;
    use std::sync::Arc;

    fn count(s: &Store) -> i64 {
        s.conn().query_row("SELECT COUNT(*) FROM audit", [], |r| r.get(0)).unwrap()
    }

    /// Many writers at once: every work is written, each in the transaction of some commit,
    /// fewer commits than works; a work that fails leaves nothing of its own and does not
    /// fail the others of its group.
    #[test]
    fn concurrent_writers_share_commits_and_fail_alone() {
        let d = tempfile::tempdir().unwrap();
        let s = Arc::new(Store::open(&d.path().join("k.db")).unwrap());
        let commits = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        {
            let commits = commits.clone();
            s.conn().commit_hook(Some(move || {
                commits.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                false
            }));
        }
        let threads: Vec<_> = (0..8)
            .map(|t| {
                let s = s.clone();
                std::thread::spawn(move || {
                    for i in 0..25 {
                        let fail = i % 5 == 4;
                        let r = s.grouped(move |c| {
                            super::super::records::insert_audit(c, &super::super::test_rows::audit())?;
                            if fail {
                                return Err(StoreError::Unavailable(format!("work {t}/{i} refuses")));
                            }
                            Ok(i)
                        });
                        match r {
                            Ok(v) => assert!(!fail && v == i),
                            Err(e) => assert!(fail && e.to_string().contains(&format!("work {t}/{i} refuses")), "{e}"),
                        }
                    }
                })
            })
            .collect();
        threads.into_iter().for_each(|t| t.join().unwrap());
        assert_eq!(count(&s), 8 * 20, "every work that succeeded, none that failed");
        let n = commits.load(std::sync::atomic::Ordering::SeqCst);
        assert!(n <= 8 * 25, "one commit per group at most: {n}");

        // Eight writers queued while the connection is busy: one commit for all of them.
        let busy = s.conn();
        let before = commits.load(std::sync::atomic::Ordering::SeqCst);
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let s = s.clone();
                std::thread::spawn(move || s.grouped(|c| Ok(super::super::records::insert_audit(c, &super::super::test_rows::audit())?)))
            })
            .collect();
        while s.group.works.lock().unwrap().len() < 8 {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        drop(busy);
        threads.into_iter().for_each(|t| t.join().unwrap().unwrap());
        assert_eq!(commits.load(std::sync::atomic::Ordering::SeqCst) - before, 1, "the eight share one commit");
        // Durable for another connection.
        let other = rusqlite::Connection::open(d.path().join("k.db")).unwrap();
        let n: i64 = other.query_row("SELECT COUNT(*) FROM audit", [], |r| r.get(0)).unwrap();
        assert_eq!(n, 168);
    }
}
