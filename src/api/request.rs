//! What keyport knows about a request beyond its HTTP: who is at the other end of the
//! connection, when its body must have arrived, whether it has ended, and — filled in on the way
//! down — its route template and principal, for the access line written on the way back.
//!
//! One value in the request's extensions, made once by the listener: each extension is a
//! boxed allocation and every request pays for each (`GET keys/{id}`: BENCHMARKS.md,
//! 2026-12-04, third session).

use axum::http::{Extensions, HeaderValue};
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use super::body::BodyClock;
use crate::core::authz::{Peer, Principal};
use crate::core::kdf::Cancel;

#[derive(Clone)]
pub struct Context(Arc<Inner>);

struct Inner {
    peer: Peer,
    /// The request id (`access::request_id`), answered as `x-request-id`.
    id: HeaderValue,
    clock: BodyClock,
    /// Cancelled when the request ends (answered, timed out, or the client hung up): queued
    /// work for it (`core::kdf`) is then not started.
    ended: Cancel,
    seen: Mutex<Seen>,
    /// The status the listener answered with itself (a time-out's 503), if it did: what the
    /// client got, whatever the handler returns later.
    answered: AtomicU16,
}

#[derive(Default)]
struct Seen {
    route: Option<&'static str>,
    principal: Option<Arc<Principal>>,
}

impl Context {
    pub fn new(peer: Peer, id: HeaderValue, clock: BodyClock) -> Context {
        Context(Arc::new(Inner { peer, id, clock, ended: Cancel::default(), seen: Mutex::default(), answered: AtomicU16::new(0) }))
    }

    /// The request's context. Every request the listeners serve has one.
    pub fn of(extensions: &Extensions) -> Option<&Context> {
        extensions.get::<Context>()
    }

    pub fn peer(&self) -> Peer {
        self.0.peer
    }

    pub fn id(&self) -> &HeaderValue {
        &self.0.id
    }

    pub fn clock(&self) -> &BodyClock {
        &self.0.clock
    }

    pub fn ended(&self) -> &Cancel {
        &self.0.ended
    }

    /// The router's template of the route that matched (`access::NoteRoute`).
    pub fn note_route(&self, template: &'static str) {
        self.seen().route = Some(template);
    }

    /// The principal a face identified (`auth::identify`).
    pub fn note_principal(&self, who: &Arc<Principal>) {
        self.seen().principal = Some(who.clone());
    }

    /// What was noted on the way down: the route template and the principal.
    pub fn noted(&self) -> (Option<&'static str>, Option<Arc<Principal>>) {
        let seen = self.seen();
        (seen.route, seen.principal.clone())
    }

    /// The listener answered `status` itself (the request ran past its time-out).
    pub fn answered_by_listener(&self, status: u16) {
        self.0.answered.store(status, Ordering::Release);
    }

    /// The status the listener answered with, if it did.
    pub fn listener_answer(&self) -> Option<u16> {
        Some(self.0.answered.load(Ordering::Acquire)).filter(|s| *s != 0)
    }

    /// The notes, also while a panic unwinds (the access line is written on drop): nothing under
    /// this lock can panic, and a poisoned one must not turn one request's panic into an abort.
    fn seen(&self) -> MutexGuard<'_, Seen> {
        self.0.seen.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
