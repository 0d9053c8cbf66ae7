//! Items of a batch (a TLS Protect Cloud import job, a KPS batch import) written through several
//! token sessions at once, with every item's outcome the one working them one after another
//! gives.
//!
//! One token session is the bound of a batch written item by item (SoftHSM's object writes
//! take ~30 ms of one session each); a raw cryptoki loop with two threads writes twice as fast.
//! What makes one item's outcome depend on an earlier one is known before any write: the same
//! key (fingerprint: the later one is "already present") or the same name (the later one gets
//! another name, or is refused). Each item comes with those as its *keys*; an item starts only
//! when fewer than `writers` items are running and none of the running ones shares a key with
//! it. Items start in order, so every earlier item sharing a key has finished (committed or
//! failed) when a later one decides: the decision is the sequential one. Items sharing nothing
//! touch different names and keys, so their order does not matter.

use std::collections::HashSet;
use std::future::Future;
use tokio::task::JoinSet;

/// How many items of a batch to have in flight for a token with `sessions` sessions: twice as
/// many, so each session has the next item ready while others are in their store commits (two
/// fsync'd transactions per item, `core::create`), and so commits of items in the store at the
/// same moment share an fsync (`store::group`). The token itself never runs more than
/// `sessions` operations at once.
pub fn lanes_for(sessions: usize) -> usize {
    sessions.max(1) * 2
}

/// The items running now, with their keys. Each runs as a task of its own, so it goes on (and
/// gives back its token session) while the caller waits for something else, such as the next
/// item's decoding, which may need a token session too. Dropping the lanes aborts what still
/// runs (the caller drains them first; an aborted creation is undone like a crashed one).
pub struct Lanes<T> {
    writers: usize,
    running: JoinSet<(usize, T)>,
    keys: Vec<(usize, Vec<String>)>,
}

impl<T: Send + 'static> Lanes<T> {
    /// At most `writers` (at least one) items at once.
    pub fn new(writers: usize) -> Self {
        Lanes { writers: writers.max(1), running: JoinSet::new(), keys: Vec::new() }
    }

    fn blocked(&self, keys: &[String]) -> bool {
        self.keys.len() >= self.writers || self.keys.iter().any(|(_, k)| k.iter().any(|x| keys.contains(x)))
    }

    /// Waits until an item with `keys` may start; gives the (position, result) of every item
    /// that finished meanwhile.
    pub async fn admit(&mut self, keys: &[String]) -> Vec<(usize, T)> {
        let mut done = Vec::new();
        while self.blocked(keys) {
            done.push(self.next().await.expect("a blocked lane has running items"));
        }
        done
    }

    /// Starts item `pos` (after [`Lanes::admit`] for its keys).
    pub fn start(&mut self, pos: usize, keys: Vec<String>, work: impl Future<Output = T> + Send + 'static) {
        debug_assert!(!self.blocked(&keys));
        self.keys.push((pos, dedup(keys)));
        self.running.spawn(async move { (pos, work.await) });
    }

    /// The next item to finish, `None` when none is running. A panic in an item is the
    /// caller's panic.
    pub async fn next(&mut self) -> Option<(usize, T)> {
        let (pos, r) = match self.running.join_next().await? {
            Ok(done) => done,
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(e) => panic!("a batch item was cancelled while its lanes were in use: {e}"),
        };
        self.keys.retain(|(p, _)| *p != pos);
        Some((pos, r))
    }

    /// Waits for every running item.
    pub async fn drain(&mut self) -> Vec<(usize, T)> {
        let mut done = Vec::new();
        while let Some(d) = self.next().await {
            done.push(d);
        }
        done
    }
}

/// Runs `work` on every item, up to `writers` at once under the rule above; results in item
/// order.
pub async fn run_ordered<I, T, F, Fut>(items: Vec<(Vec<String>, I)>, writers: usize, work: F) -> Vec<T>
where
    F: Fn(I) -> Fut,
    Fut: Future<Output = T> + Send + 'static,
    T: Send + 'static,
{
    let n = items.len();
    let mut out: Vec<Option<T>> = (0..n).map(|_| None).collect();
    let mut lanes = Lanes::new(writers);
    for (pos, (keys, item)) in items.into_iter().enumerate() {
        for (p, r) in lanes.admit(&keys).await {
            out[p] = Some(r);
        }
        lanes.start(pos, keys, work(item));
    }
    for (p, r) in lanes.drain().await {
        out[p] = Some(r);
    }
    out.into_iter().map(|r| r.expect("every item ran")).collect()
}

fn dedup(keys: Vec<String>) -> Vec<String> {
    let mut seen = HashSet::new();
    keys.into_iter().filter(|k| seen.insert(k.clone())).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    /// Items sharing a key run one after the other in item order; others overlap, at most
    /// `writers` at once; results come back in item order.
    #[tokio::test]
    async fn shared_keys_wait_for_the_earlier_item_and_others_overlap() {
        let log = Arc::new(Mutex::new(Vec::<String>::new()));
        let running = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let peak = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let items: Vec<(Vec<String>, usize)> = vec![
            (vec!["a".into()], 0),
            (vec!["b".into()], 1),
            (vec!["a".into()], 2),
            (vec!["c".into()], 3),
            (vec!["c".into(), "d".into()], 4),
            (vec!["e".into()], 5),
        ];
        let out = run_ordered(items, 2, |i| {
            let (log, running, peak) = (log.clone(), running.clone(), peak.clone());
            async move {
                let now = running.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
                peak.fetch_max(now, std::sync::atomic::Ordering::SeqCst);
                log.lock().unwrap().push(format!("start {i}"));
                // Item 0 is slow: item 2 (same key) must still wait for it.
                tokio::time::sleep(Duration::from_millis(if i == 0 { 60 } else { 5 })).await;
                log.lock().unwrap().push(format!("end {i}"));
                running.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
                i * 10
            }
        })
        .await;
        assert_eq!(out, vec![0, 10, 20, 30, 40, 50]);
        let log = log.lock().unwrap().clone();
        let at = |s: &str| log.iter().position(|l| l == s).unwrap();
        assert!(at("end 0") < at("start 2"), "{log:?}");
        assert!(at("end 3") < at("start 4"), "{log:?}");
        assert!(at("start 1") < at("end 0"), "items 0 and 1 share nothing and overlap: {log:?}");
        assert_eq!(peak.load(std::sync::atomic::Ordering::SeqCst), 2);
    }

    /// A running item goes on while the caller waits for something else: here the caller
    /// needs the one permit the item holds until it has finished (the token session that the
    /// next item's decoding needs, in an import job).
    #[tokio::test]
    async fn running_items_progress_while_the_caller_waits_elsewhere() {
        let session = Arc::new(tokio::sync::Semaphore::new(1));
        let mut lanes = Lanes::new(2);
        let s = session.clone();
        lanes.start(0, vec!["a".into()], async move {
            let _p = s.acquire().await.unwrap();
            tokio::time::sleep(Duration::from_millis(20)).await;
            7
        });
        lanes.start(1, vec!["b".into()], async { 8 });
        // Both lanes busy: waiting for one returns when item 1 is done, item 0 holding the permit.
        let done = lanes.admit(&["c".to_string()]).await;
        assert_eq!(done, vec![(1, 8)]);
        let got = tokio::time::timeout(Duration::from_secs(5), session.acquire()).await;
        assert!(got.is_ok(), "the running item never gave its permit back");
        drop(got);
        assert_eq!(lanes.drain().await, vec![(0, 7)]);
    }

    #[tokio::test]
    async fn one_writer_is_sequential() {
        let order = Arc::new(Mutex::new(Vec::new()));
        let items: Vec<(Vec<String>, usize)> = (0..5).map(|i| (vec![format!("k{i}")], i)).collect();
        run_ordered(items, 1, |i| {
            let order = order.clone();
            async move {
                order.lock().unwrap().push(i);
            }
        })
        .await;
        assert_eq!(*order.lock().unwrap(), vec![0, 1, 2, 3, 4]);
    }
}
