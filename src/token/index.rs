//! The in-memory index of token objects by CKA_ID. SoftHSM's C_FindObjects scans every object
//! (≈ 19 µs each, 190 ms at 10,000: docs/pkcs11.md §3), so the request path never searches
//! the token: the index is built once when a token opens and kept current on create/destroy.

use cryptoki::object::ObjectHandle;
use std::collections::HashMap;

/// The objects that share one CKA_ID: a key pair, its certificate, or a secret key.
#[derive(Debug, Clone, Default)]
pub struct ObjectSet {
    pub private: Option<ObjectHandle>,
    pub public: Option<ObjectHandle>,
    pub certificate: Option<ObjectHandle>,
    pub secret: Option<ObjectHandle>,
}

impl ObjectSet {
    pub fn handles(&self) -> impl Iterator<Item = ObjectHandle> + '_ {
        [self.private, self.public, self.certificate, self.secret].into_iter().flatten()
    }
}

#[derive(Debug, Default)]
pub struct Index {
    by_id: HashMap<Vec<u8>, ObjectSet>,
    /// Objects without a CKA_ID: counted (health, reconcile logs) but never touched.
    pub unnamed: usize,
    /// Objects whose class cannot be read (a torn object file: the process writing it was
    /// killed). Left out of the index and reported; they never stop a start.
    pub unreadable: Vec<Unreadable>,
    /// Key objects with neither CKA_ID nor label: what SoftHSM leaves when a generation or
    /// import is killed before it wrote the template (it writes defaults and key material
    /// first, one file rewrite per step). Reconcile removes them after an interrupted creation
    /// of keyport's own, and only reports them otherwise.
    pub half_made: Vec<ObjectHandle>,
}

/// An object the index could not read.
#[derive(Debug, Clone)]
pub struct Unreadable {
    pub handle: ObjectHandle,
    /// What the token answered (the CKR_ name).
    pub detail: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Private,
    Public,
    Certificate,
    Secret,
}

impl Index {
    pub fn with_capacity(ids: usize) -> Index {
        Index { by_id: HashMap::with_capacity(ids), ..Default::default() }
    }

    pub fn insert(&mut self, id: &[u8], kind: Kind, h: ObjectHandle) {
        self.insert_owned(id.to_vec(), kind, h)
    }

    /// [`Index::insert`] of an id the caller no longer needs (no copy).
    pub fn insert_owned(&mut self, id: Vec<u8>, kind: Kind, h: ObjectHandle) {
        let e = self.by_id.entry(id).or_default();
        let slot = match kind {
            Kind::Private => &mut e.private,
            Kind::Public => &mut e.public,
            Kind::Certificate => &mut e.certificate,
            Kind::Secret => &mut e.secret,
        };
        *slot = Some(h);
    }

    pub fn get(&self, id: &[u8]) -> Option<&ObjectSet> {
        self.by_id.get(id)
    }

    pub fn remove(&mut self, id: &[u8]) -> Option<ObjectSet> {
        self.by_id.remove(id)
    }

    /// Forgets the certificate object of `id`, and the id when nothing else is left under it.
    pub fn remove_certificate(&mut self, id: &[u8]) -> Option<ObjectHandle> {
        let e = self.by_id.get_mut(id)?;
        let h = e.certificate.take();
        if e.private.is_none() && e.public.is_none() && e.secret.is_none() {
            self.by_id.remove(id);
        }
        h
    }

    pub fn ids(&self) -> impl Iterator<Item = (&Vec<u8>, &ObjectSet)> {
        self.by_id.iter()
    }

    pub fn object_count(&self) -> usize {
        self.by_id.values().map(|s| s.handles().count()).sum::<usize>() + self.unnamed
    }
}
