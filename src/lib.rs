//! keyport: a host key agent. Keys live in a PKCS#11 token; local callers reach them over a
//! Unix socket and a loopback HTTPS port that speak the import and export APIs of the key
//! vaults enterprises use; wrapped keys and certificates sync to a remote vault.
//!
//! One core, many thin faces (see `docs/ARCHITECTURE.md`, and `docs/face-*.md` per face):
//!
//! - [`config`]: the TOML configuration, `KEYPORT_…` overrides, and `config check`.
//! - [`token`]: the only module that calls cryptoki: module contexts, session pool, login,
//!   recovery, the object index, key and certificate objects, SoftHSM provisioning, and the
//!   token-key signer rustls and rcgen use (HTTPS server key, vault client key).
//! - [`store`]: SQLite (WAL) with migrations: inventory, creation intents, jobs, audit log.
//!   Never key material.
//! - [`material`]: byte formats as pure functions: PEM/DER PKCS#1, SEC1, PKCS#8 (plain and
//!   encrypted), PKCS#12, X.509, OpenSSH, PuTTY PPK, ssh.com (readers and writers); zip/XML
//!   certificate bundles read defensively; public keys and fingerprints.
//! - [`core`]: the operations every face shares: key generation, import and export (with
//!   every export format) under crash-safe intents, certificates, import jobs that survive
//!   restarts, the edge DEK (sealed boxes), start-up reconciliation, principals, names, the
//!   audit log's reader (`audit`), the daemon's counters (`telemetry`), and SSH keysets with
//!   TPP's rotation stages, hooks and schedules (`core::rotation`).
//! - [`api`]: listeners (Unix socket with peer credentials, loopback TCP with TLS), request
//!   limits, authentication, the access log and request ids (`access`), and one module per face:
//!   `native` (`/keyport/v1`, with `certificates`, `sync`, `metrics`, `audit` and `import` views), `tlspc` (TLS Protect Cloud imports), `certimport`
//!   (DigiCert IoT certificate bundles), `kps` (Huawei KPS), `keys` (project/environment
//!   keys), `tpp` (Venafi TPP SSH export), `sign` (`POST keys/{id}/sign`); and `agent`, the
//!   ssh-agent protocol on its own Unix socket (keys used in the token through `core::sign`).
//! - [`sync`]: scheduled sync of wrapped keys and certificates to the remote vault (OpenBao, or
//!   a TLS Protect Cloud–style remote): the outbox, the schedule, the connectors, the vault
//!   login (token, AppRole, or TLS certificate with the client key in the token), the lost-data
//!   check and `restore`; keys are wrapped inside the token (`token::byok`).
//! - [`clock`]: the one clock; every stored instant is a `Timestamp`, parsed once.
//! - [`server`]: `keyport serve`: wires config, tokens, store and listeners; signals.
//! - [`cli`]: the client subcommands, speaking HTTP over the Unix socket.
//! - `fuzzing` (feature `fuzzing` only): one entry point per untrusted-input parser, for the
//!   fuzz targets in `fuzz/`.
#![deny(unsafe_code)]

pub mod api;
pub mod cli;
pub mod clock;
pub mod config;
pub mod core;
#[cfg(feature = "fuzzing")]
pub mod fuzzing;
pub mod material;
pub mod names;
pub mod server;
pub mod store;
pub mod sync;
pub mod test_hooks;
pub mod token;
