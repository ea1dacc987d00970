//! rwsplit: a MySQL/MariaDB read/write-splitting proxy.
//!
//! Data flow of one statement: `server` accepts a client and `session`
//! logs it in (`session::login`); the session reads a command packet,
//! picks a backend, gets a connection from `backend` (opened lazily, logged
//! in as the client), forwards the packet and lets `relay` stream the
//! response back byte for byte while watching its boundaries and status
//! flags; the session then updates its state (status flags, prepared
//! statement ids).
//!
//! Modules that do I/O: `server`, `session`, `backend`, `relay` (its
//! `relay` function). Pure: `protocol`, `config`, `error`, and
//! `relay::Machine`.

#![forbid(unsafe_code)]

pub mod admin;
pub mod backend;
pub mod backend_tls;
pub mod classify;
pub mod compress;
pub mod config;
pub mod digests;
pub mod error;
pub mod intmap;
pub mod monitor;
pub mod net;
pub mod protocol;
pub mod recent_writes;
pub mod relay;
pub mod router;
pub mod server;
pub mod session;
pub mod sharded;
pub mod telemetry;
pub mod tls;
pub mod weighting;

pub use config::Config;
pub use server::{Proxy, Shared, run};
