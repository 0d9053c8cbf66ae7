//! CKA_IDs keyport keeps for its own objects in a token. Keys callers create get 16 random
//! bytes; these are readable strings, so they never collide, and start-up reconciliation knows
//! them as keyport's own (never "half-made", never listed).

/// The HTTPS listener's P-256 key and its self-signed certificate (`core::tls_identity`).
pub const TLS_ID: &[u8] = b"keyport-tls";
/// The AES key that seals the edge DEK at rest (`core::dek`).
pub const AT_REST_KEY_ID: &[u8] = b"keyport-at-rest";
/// The vault client certificate's key (`sync::client_cert`).
pub const CLIENT_KEY_ID: &[u8] = b"keyport-vault-client";

/// Every reserved CKA_ID.
pub const ALL: [&[u8]; 3] = [TLS_ID, AT_REST_KEY_ID, CLIENT_KEY_ID];
