//! Caps on key-derivation parameters taken from untrusted input. One request must not be able
//! to pin a core for minutes or allocate gigabytes: a file asking for more is refused with
//! `MaterialError::KdfTooExpensive` before any work is done.

/// PBKDF2 (PKCS#5 PBES2) and the PKCS#12 KDF: iterations. OpenSSL writes 2,048; OWASP's 2023
/// advice for PBKDF2-SHA256 is 600,000.
pub const MAX_PBKDF2_ITERATIONS: u64 = 1_000_000;
/// scrypt: memory = 128 · r · N bytes must stay at or under this (OpenSSL's default N=16384,
/// r=8 uses 16 MiB).
pub const MAX_SCRYPT_MEMORY: u64 = 64 * 1024 * 1024;
pub const MAX_SCRYPT_P: u64 = 16;
/// Argon2 (PuTTY PPK v3): memory in KiB and passes. puttygen writes 8,192 KiB and ~20-40 passes.
pub const MAX_ARGON2_MEMORY_KIB: u64 = 256 * 1024;
pub const MAX_ARGON2_PASSES: u64 = 200;
pub const MAX_ARGON2_PARALLELISM: u64 = 16;
/// bcrypt_pbkdf (OpenSSH): rounds. ssh-keygen writes 16 (~150 ms); -a 100 is a common choice.
pub const MAX_BCRYPT_ROUNDS: u64 = 1_000;
/// Largest key file or blob any reader accepts.
pub const MAX_KEY_FILE_BYTES: usize = 256 * 1024;
