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
fn one(s: &Session, h: ObjectHandle, t: AttributeType) -> Result<Option<Attribute>, String> {
    match s.get_attributes(h, &[t]) {
        Ok(mut v) => Ok(v.pop()),
        Err(e) => Err(rv(&e)),
    }
}

pub(super) fn build_index(s: &Session) -> cryptoki::error::Result<Index> {
    let mut idx = Index::default();
    for h in handles(s)? {
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
                    Ok(_) => {
                        idx.unreadable.push(Unreadable { handle: h, detail: "no CKA_CLASS".into() });
                        continue;
                    }
                    Err(detail) => {
                        idx.unreadable.push(Unreadable { handle: h, detail: format!("C_GetAttributeValue(CKA_CLASS): {detail}") });
                        continue;
                    }
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
        let kind = match class {
            Some(ObjectClass::PRIVATE_KEY) => Kind::Private,
            Some(ObjectClass::PUBLIC_KEY) => Kind::Public,
            Some(ObjectClass::CERTIFICATE) => Kind::Certificate,
            Some(ObjectClass::SECRET_KEY) => Kind::Secret,
            _ => {
                idx.unnamed += 1;
                continue;
            }
        };
        if id.is_empty() {
            idx.unnamed += 1;
            if label.is_empty() && matches!(kind, Kind::Private | Kind::Public) {
                idx.half_made.push(h);
            }
        } else {
            idx.insert(&id, &label, kind, h);
        }
    }
    Ok(idx)
}
