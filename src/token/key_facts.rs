//! What the token itself says about a private key's history: CKA_LOCAL (generated in this
//! token), CKA_NEVER_EXTRACTABLE, CKA_ALWAYS_SENSITIVE, CKA_EXTRACTABLE. Read, never set: a
//! token sets them at creation, and health reports them as the token has them.

use cryptoki::object::{Attribute, AttributeType};

use super::{Ctx, TokenError};

/// The token's flags of one private key; `None` where the token does not report one.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct KeyFacts {
    pub local: Option<bool>,
    pub never_extractable: Option<bool>,
    pub always_sensitive: Option<bool>,
    pub extractable: Option<bool>,
}

/// The flags of the private key under `id`; `None` when the token holds no private key there.
pub fn read(c: &Ctx, id: &[u8]) -> Result<Option<KeyFacts>, TokenError> {
    let h = c.live.index.read().expect("poisoned").get(id).and_then(|s| s.private);
    let Some(h) = h else { return Ok(None) };
    let attrs = c.ck(
        "C_GetAttributeValue",
        c.session.get_attributes(
            h,
            &[AttributeType::Local, AttributeType::NeverExtractable, AttributeType::AlwaysSensitive, AttributeType::Extractable],
        ),
    )?;
    let mut f = KeyFacts::default();
    for a in attrs {
        match a {
            Attribute::Local(b) => f.local = Some(b),
            Attribute::NeverExtractable(b) => f.never_extractable = Some(b),
            Attribute::AlwaysSensitive(b) => f.always_sensitive = Some(b),
            Attribute::Extractable(b) => f.extractable = Some(b),
            _ => {}
        }
    }
    Ok(Some(f))
}
