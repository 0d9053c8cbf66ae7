//! Connection slots of one listener: a cap (`limits.max_connections`), a share per uid
//! (socket) or per address (TCP) (`limits.max_connections_per_peer`), and on the socket a
//! reserve only admin principals may take (`limits.admin_reserve_connections`). Taking a slot
//! never waits: a connection without one is refused at once, so one busy or hostile caller
//! cannot make the others queue behind it.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

/// Whom a share is counted for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PeerKey {
    Uid(u32),
    Ip(IpAddr),
}

#[derive(Debug)]
pub struct Slots {
    max: usize,
    per_peer: usize,
    /// Slots only privileged peers may take (at most `max - 1`).
    reserve: usize,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    open: usize,
    per_peer: HashMap<PeerKey, usize>,
}

impl Slots {
    pub fn new(max: usize, per_peer: usize, reserve: usize) -> Arc<Slots> {
        let max = max.max(1);
        Arc::new(Slots { max, per_peer: per_peer.max(1), reserve: reserve.min(max - 1), state: Mutex::default() })
    }

    /// A slot for `key`, or why there is none. `privileged` peers may use the reserve and are
    /// not held to the per-peer share (the cap still holds).
    pub fn try_take(self: &Arc<Self>, key: PeerKey, privileged: bool) -> Result<Slot, &'static str> {
        let mut st = self.state.lock().expect("poisoned");
        if privileged {
            if st.open >= self.max {
                return Err("every connection slot of this listener is in use (limits.max_connections)");
            }
        } else {
            if st.open >= self.max - self.reserve {
                return Err("every connection slot of this listener open to non-admin callers is in use (limits.max_connections, admin_reserve_connections)");
            }
            if st.per_peer.get(&key).copied().unwrap_or(0) >= self.per_peer {
                return Err("this caller already holds its share of connections (limits.max_connections_per_peer)");
            }
        }
        st.open += 1;
        *st.per_peer.entry(key).or_default() += 1;
        Ok(Slot { slots: self.clone(), key })
    }

    /// Slots in use (shutdown waits for zero).
    pub fn open(&self) -> usize {
        self.state.lock().expect("poisoned").open
    }
}

/// A taken slot; given back on drop.
#[derive(Debug)]
pub struct Slot {
    slots: Arc<Slots>,
    key: PeerKey,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut st = self.slots.state.lock().expect("poisoned");
        st.open -= 1;
        if let Some(n) = st.per_peer.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                st.per_peer.remove(&self.key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cap_share_and_reserve() {
        let s = Slots::new(4, 2, 1);
        let (a, b) = (PeerKey::Uid(1000), PeerKey::Uid(1001));
        let a1 = s.try_take(a, false).unwrap();
        let _a2 = s.try_take(a, false).unwrap();
        assert!(s.try_take(a, false).unwrap_err().contains("share"));
        let _b1 = s.try_take(b, false).unwrap();
        assert!(s.try_take(b, false).unwrap_err().contains("admin_reserve"), "the last slot is the admins'");
        let root = s.try_take(PeerKey::Uid(0), true).unwrap();
        assert!(s.try_take(PeerKey::Uid(0), true).is_err(), "the cap holds for admins too");
        drop(root);
        drop(a1);
        let _a3 = s.try_take(a, false).expect("a slot given back is free again");
        assert_eq!(s.open(), 3);
        assert_eq!(Slots::new(1, 1, 16).reserve, 0, "someone else can always connect");
    }
}
