//! Byte formats, pure functions with no I/O: key algorithms and their public-key encodings.
//! Later: PEM, PKCS#1/#8, X.509, OpenSSH, PuTTY, SSH2/Tectia, the DEK sealed box, bundles.

pub mod algorithm;
pub mod key;
pub mod limits;
pub mod pkcs;
pub mod spki;
pub mod x509;
