//! Building the object index at open, tolerating objects that cannot be read.
//!
//! A SoftHSM object file torn by a kill (8 or 32 bytes, no complete attributes) answers
//! C_GetAttributeValue with CKR_ATTRIBUTE_VALUE_INVALID. One such object must not stop the
//! daemon: every object is read on its own, failures are collected (`Index::unreadable`) and
//! reported at start, and the rest is indexed.

use cryptoki::object::{Attribute, AttributeType, ObjectClass, ObjectHandle};
use cryptoki::session::Session;

use super::error::short_rv;
use super::index::{Index, Kind, Unreadable};
use super::raw::RawModule;

fn rv(e: &cryptoki::error::Error) -> String {
    match e {
        cryptoki::error::Error::Pkcs11(rv, _) => short_rv(*rv),
        other => other.to_string(),
    }
}

/// Every object handle the session sees. If one search over everything fails, searches by
/// class (SoftHSM matches a class template without reading the other attributes).
fn handles(s: &Session) -> cryptoki::error::Result<Vec<ObjectHandle>> {
    match s.find_objects(&[]) {
        Ok(h) => Ok(h),
        Err(e) => {
            tracing::warn!(error = %rv(&e), "C_FindObjects over all objects failed; searching class by class");
            let mut all = Vec::new();
            for class in
                [ObjectClass::PRIVATE_KEY, ObjectClass::PUBLIC_KEY, ObjectClass::CERTIFICATE, ObjectClass::SECRET_KEY, ObjectClass::DATA]
            {
                match s.find_objects(&[Attribute::Class(class)]) {
                    Ok(h) => all.extend(h),
                    Err(e) => tracing::warn!(?class, error = %rv(&e), "C_FindObjects for one class failed; its objects are left out"),
                }
            }
            all.sort_by_key(|h| h.handle());
            all.dedup();
            Ok(all)
        }
    }
}

/// One attribute on its own: `None` when the token cannot give it.
fn one(s: &Session, h: ObjectHandle, t: AttributeType) -> Result<Option<Attribute>, cryptoki::error::Error> {
    s.get_attributes(h, &[t]).map(|mut v| v.pop())
}

/// What one object read gives the index.
enum Read {
    Indexed { id: Vec<u8>, kind: Kind },
    Unnamed { half_made: bool },
    Unreadable(Unreadable),
}

/// The index of every object `s` sees: one C_FindObjects, then one C_GetAttributeValue per
/// object (`raw`: [`RawModule::class_and_id`]), each read going straight into the index
/// (sized once), so start-up holds no second copy of every id (labels are not kept). On SoftHSM each read
/// re-checks the object's file (a few system calls) and the reads are most of a large token's
/// start; a second session on another thread made it no faster on an idle 2-core machine
/// (SoftHSM serialises them) and left its thread's heap behind (BENCHMARKS.md, 2026-12-04).
pub(super) fn build_index(s: &Session, raw: &RawModule) -> cryptoki::error::Result<Index> {
    let all = handles(s)?;
    // A key pair is two objects with one CKA_ID.
    let mut idx = Index::with_capacity(all.len() / 2 + 1);
    for h in all {
        match read(raw, s, h) {
            Read::Indexed { id, kind } => idx.insert_owned(id, kind, h),
            Read::Unnamed { half_made } => {
                idx.unnamed += 1;
                if half_made {
                    idx.half_made.push(h);
                }
            }
            Read::Unreadable(u) => idx.unreadable.push(u),
        }
    }
    Ok(idx)
}

/// One object's class and id (and its label when it has no id): in one call, or else
/// attribute by attribute.
fn read(raw: &RawModule, s: &Session, h: ObjectHandle) -> Read {
    if let Some((class, id)) = raw.class_and_id(s.handle(), h.handle()) {
        // Matched on the numbers: cryptoki's conversion logs an error for every vendor class.
        let class = [ObjectClass::PRIVATE_KEY, ObjectClass::PUBLIC_KEY, ObjectClass::CERTIFICATE, ObjectClass::SECRET_KEY]
            .into_iter()
            .find(|c| cryptoki_sys::CK_OBJECT_CLASS::from(*c) == class);
        let label = if id.is_empty() {
            match one(s, h, AttributeType::Label) {
                Ok(Some(Attribute::Label(l))) => String::from_utf8_lossy(&l).into_owned(),
                Ok(_) => String::new(),
                // A label that cannot be read is no evidence of a half-made object (which
                // reconcile may destroy): counted, never touched.
                Err(_) => return Read::Unnamed { half_made: false },
            }
        } else {
            String::new()
        };
        return classify(class, id, label);
    }
    let (class, id, label) = match s.get_attributes(h, &[AttributeType::Class, AttributeType::Id, AttributeType::Label]) {
        Ok(attrs) => {
            let (mut class, mut id, mut label) = (None, Vec::new(), String::new());
            for a in attrs {
                match a {
                    Attribute::Class(c) => class = Some(c),
                    Attribute::Id(v) => id = v,
                    Attribute::Label(l) => label = String::from_utf8_lossy(&l).into_owned(),
                    _ => {}
                }
            }
            (class, id, label)
        }
        // Read them one by one: a torn object may hold some of them.
        Err(_) => {
            let class = match one(s, h, AttributeType::Class) {
                Ok(Some(Attribute::Class(c))) => c,
                Ok(_) => return Read::Unreadable(Unreadable { handle: h, detail: "no CKA_CLASS".into() }),
                // The token answered, with a class cryptoki has no name for: a vendor-defined
                // object (p11-kit's trust module holds NSS trust objects), never keyport's.
                Err(e) if !matches!(e, cryptoki::error::Error::Pkcs11(..)) => return Read::Unnamed { half_made: false },
                Err(e) => return Read::Unreadable(Unreadable { handle: h, detail: format!("C_GetAttributeValue(CKA_CLASS): {}", rv(&e)) }),
            };
            let id = match one(s, h, AttributeType::Id) {
                Ok(Some(Attribute::Id(v))) => v,
                _ => Vec::new(),
            };
            let label = match one(s, h, AttributeType::Label) {
                Ok(Some(Attribute::Label(l))) => String::from_utf8_lossy(&l).into_owned(),
                _ => String::new(),
            };
            (Some(class), id, label)
        }
    };
    classify(class, id, label)
}

/// What the index makes of an object's class, id and label.
fn classify(class: Option<ObjectClass>, id: Vec<u8>, label: String) -> Read {
    let kind = match class {
        Some(ObjectClass::PRIVATE_KEY) => Kind::Private,
        Some(ObjectClass::PUBLIC_KEY) => Kind::Public,
        Some(ObjectClass::CERTIFICATE) => Kind::Certificate,
        Some(ObjectClass::SECRET_KEY) => Kind::Secret,
        _ => return Read::Unnamed { half_made: false },
    };
    if id.is_empty() {
        Read::Unnamed { half_made: label.is_empty() && matches!(kind, Kind::Private | Kind::Public) }
    } else {
        Read::Indexed { id, kind }
    }
}
