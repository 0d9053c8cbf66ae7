//! Caps on key-derivation parameters taken from untrusted input. One request must not be able
//! to pin a core for long or allocate much: a file asking for more is refused with
//! `MaterialError::KdfTooExpensive` before any work is done. Each cap is what the usual tool
//! writes by default, with a margin for people who turned the knob up; a derivation at a cap
//! costs about a second of one core (release build). How many run at once is bounded
//! separately (`core::kdf`).

/// PBKDF2 (PKCS#5 PBES2, PBES1) and the PKCS#12 KDF: iterations. `openssl pkcs8 -topk8` and
/// `openssl pkcs12` write 2,048 (PKCS5_DEFAULT_ITER), Java's keytool 10,000; the cap is OWASP's
/// 2023 figure for PBKDF2-HMAC-SHA256, the most anyone is advised to use (~0.3 s).
pub const MAX_PBKDF2_ITERATIONS: u64 = 600_000;
/// scrypt: memory = 128 · r · N bytes. `openssl pkcs8 -scrypt` writes N=16384, r=8, p=1
/// (16 MiB); the cap is 4× that.
pub const MAX_SCRYPT_MEMORY: u64 = 64 * 1024 * 1024;
pub const MAX_SCRYPT_P: u64 = 16;
/// scrypt's work is 128 · r · N · p bytes mixed: at most 8× openssl's default.
pub const MAX_SCRYPT_WORK: u64 = 8 * 128 * 8 * 16_384;
/// Argon2 (PuTTY PPK v3). puttygen writes Argon2id, 8,192 KiB, parallelism 1, and as many
/// passes as take 100 ms on the machine that saves the key (8 here, a few dozen on a fast
/// desktop). Caps: 64 MiB, 64 passes, 8 lanes, and memory × passes at most 8,192 KiB × 64
/// (the default memory with 8× a fast machine's passes; ~0.5 GiB of block fills, ~1 s).
pub const MAX_ARGON2_MEMORY_KIB: u64 = 64 * 1024;
pub const MAX_ARGON2_PASSES: u64 = 64;
pub const MAX_ARGON2_PARALLELISM: u64 = 8;
pub const MAX_ARGON2_WORK_KIB: u64 = 8 * 1024 * 64;
/// bcrypt_pbkdf (OpenSSH): rounds. `ssh-keygen` writes 16 (`-a` default); guides often say
/// `-a 100`; the cap is 8× the default (~1 s).
pub const MAX_BCRYPT_ROUNDS: u64 = 128;
/// Largest key file or blob any reader accepts.
pub const MAX_KEY_FILE_BYTES: usize = 256 * 1024;
