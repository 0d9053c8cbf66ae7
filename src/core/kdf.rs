//! Where passphrase key derivations run. A caller's file chooses the KDF's cost (within the
//! caps of `material::limits`), so each derivation is real work for a core: they run on
//! blocking workers (never a runtime thread), at most `limits.kdf_concurrency` at once, with
//! at most `limits.kdf_queue` waiting and `limits.kdf_per_principal` per principal (running or
//! waiting). Past those a request is refused at once with `CoreError::Busy` (503 with
//! Retry-After in every face), so one caller cannot queue the others out. Work whose request has
//! ended (answered by the timeout, or the client hung up) is not started; a derivation already
//! running finishes (the KDF crates offer no point to stop between passes), bounded by the caps.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::Semaphore;

use super::CoreError;
use crate::config::Limits;
use crate::material::key::MaterialError;

/// Set when the request that wants the work has ended. Every request the listeners serve has
/// one (`api::request::Context::ended`); work without a request (background jobs) uses a fresh
/// one.
/// A cancellation token (one small allocation; cancelling with nobody waiting takes one
/// uncontended lock), since every request makes one.
#[derive(Clone, Default)]
pub struct Cancel(tokio_util::sync::CancellationToken);

impl Cancel {
    pub fn cancel(&self) {
        self.0.cancel();
    }

    pub fn is_cancelled(&self) -> bool {
        self.0.is_cancelled()
    }

    async fn cancelled(&self) {
        self.0.cancelled().await
    }

    /// Cancels when the returned guard is dropped (the request's future ended, one way or
    /// another).
    pub fn on_drop(&self) -> CancelOnDrop {
        CancelOnDrop(self.clone())
    }
}

pub struct CancelOnDrop(Cancel);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.cancel();
    }
}

/// The daemon's KDF slots.
pub struct KdfPool {
    running: Arc<Semaphore>,
    max_waiting: usize,
    per_principal: usize,
    waiting: Arc<AtomicUsize>,
    by_principal: Arc<Mutex<HashMap<String, usize>>>,
}

impl KdfPool {
    pub fn new(limits: &Limits) -> KdfPool {
        KdfPool {
            running: Arc::new(Semaphore::new(limits.kdf_concurrency.max(1))),
            max_waiting: limits.kdf_queue,
            per_principal: limits.kdf_per_principal.max(1),
            waiting: Default::default(),
            by_principal: Default::default(),
        }
    }

    /// Runs `f` (a decode that may derive a key from a passphrase) on a blocking worker once a
    /// slot is free, on behalf of `principal`. Refused with `Busy` when the principal's share or
    /// the queue is full; with `Invalid("request_ended")` when `cancel` fires before it starts.
    pub async fn run<T, F>(&self, principal: &str, cancel: &Cancel, f: F) -> Result<T, CoreError>
    where
        F: FnOnce() -> Result<T, MaterialError> + Send + 'static,
        T: Send + 'static,
    {
        let share = PrincipalShare::take(&self.by_principal, principal, self.per_principal).ok_or_else(|| {
            CoreError::Busy(format!(
                "principal '{principal}' already has {} key derivations running or waiting (limits.kdf_per_principal); retry when one has finished",
                self.per_principal
            ))
        })?;
        let permit = match self.running.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(_) => {
                let queued = Queued::take(&self.waiting, self.max_waiting).ok_or_else(|| {
                    CoreError::Busy(format!(
                        "{} key derivations are already waiting (limits.kdf_queue); retry in a few seconds",
                        self.max_waiting
                    ))
                })?;
                let permit = tokio::select! {
                    p = self.running.clone().acquire_owned() => p.expect("never closed"),
                    _ = cancel.cancelled() => return Err(ended()),
                };
                drop(queued);
                permit
            }
        };
        if cancel.is_cancelled() {
            return Err(ended());
        }
        // The slot and the share go with the worker: a request dropped mid-derivation still
        // counts until the derivation is over.
        tokio::task::spawn_blocking(move || {
            let r = f();
            drop((permit, share));
            r
        })
        .await
        .map_err(|e| CoreError::Internal(format!("decrypt worker failed: {e}")))?
        .map_err(super::import::material_error)
    }

    /// Runs `f` for background work (import jobs, one item at a time): waits for a slot
    /// without taking a place in the queue or a principal's share, so a job is slowed by busy
    /// callers, never failed by them.
    pub async fn run_background<T, F>(&self, f: F) -> Result<T, CoreError>
    where
        F: FnOnce() -> Result<T, MaterialError> + Send + 'static,
        T: Send + 'static,
    {
        let permit = self.running.clone().acquire_owned().await.expect("never closed");
        tokio::task::spawn_blocking(move || {
            let r = f();
            drop(permit);
            r
        })
        .await
        .map_err(|e| CoreError::Internal(format!("decrypt worker failed: {e}")))?
        .map_err(super::import::material_error)
    }
}

fn ended() -> CoreError {
    CoreError::invalid("request_ended", "the request ended (timed out or the client went away) before its key derivation started")
}

/// One principal's running-or-waiting count, given back on drop.
struct PrincipalShare {
    map: Arc<Mutex<HashMap<String, usize>>>,
    name: String,
}

impl PrincipalShare {
    fn take(map: &Arc<Mutex<HashMap<String, usize>>>, name: &str, max: usize) -> Option<PrincipalShare> {
        let mut m = map.lock().expect("poisoned");
        let n = m.entry(name.to_string()).or_default();
        if *n >= max {
            return None;
        }
        *n += 1;
        Some(PrincipalShare { map: map.clone(), name: name.to_string() })
    }
}

impl Drop for PrincipalShare {
    fn drop(&mut self) {
        let mut m = self.map.lock().expect("poisoned");
        if let Some(n) = m.get_mut(&self.name) {
            *n -= 1;
            if *n == 0 {
                m.remove(&self.name);
            }
        }
    }
}

/// A place in the queue, given back on drop.
struct Queued(Arc<AtomicUsize>);

impl Queued {
    fn take(waiting: &Arc<AtomicUsize>, max: usize) -> Option<Queued> {
        waiting.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < max).then_some(n + 1)).ok().map(|_| Queued(waiting.clone()))
    }
}

impl Drop for Queued {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn pool(running: usize, queue: usize, per: usize) -> KdfPool {
        KdfPool::new(&Limits { kdf_concurrency: running, kdf_queue: queue, kdf_per_principal: per, ..Limits::default() })
    }

    fn slow() -> Result<u8, MaterialError> {
        std::thread::sleep(Duration::from_millis(300));
        Ok(1)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn shares_queue_and_cancel() {
        let p = Arc::new(pool(1, 1, 1));
        let c = Cancel::default();
        let (p1, c1) = (p.clone(), c.clone());
        let first = tokio::spawn(async move { p1.run("a", &c1, slow).await });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(matches!(p.run("a", &c, slow).await, Err(CoreError::Busy(m)) if m.contains("kdf_per_principal")));
        let (p2, c2) = (p.clone(), c.clone());
        let queued = tokio::spawn(async move { p2.run("b", &c2, slow).await });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(matches!(p.run("c", &c, slow).await, Err(CoreError::Busy(m)) if m.contains("kdf_queue")));
        assert_eq!(first.await.unwrap().unwrap(), 1);
        assert_eq!(queued.await.unwrap().unwrap(), 1);
        // A request that has ended does not start its queued work.
        let gone = Cancel::default();
        let (p3, c3) = (p.clone(), Cancel::default());
        let busy = tokio::spawn(async move { p3.run("a", &c3, slow).await });
        tokio::time::sleep(Duration::from_millis(50)).await;
        let ran = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let r = ran.clone();
        let (p4, g4) = (p.clone(), gone.clone());
        let waiting = tokio::spawn(async move {
            p4.run("d", &g4, move || {
                r.store(true, Ordering::SeqCst);
                Ok(())
            })
            .await
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        gone.cancel();
        assert!(matches!(waiting.await.unwrap(), Err(CoreError::Invalid { code: "request_ended", .. })));
        busy.await.unwrap().unwrap();
        assert!(!ran.load(Ordering::SeqCst));
    }
}
