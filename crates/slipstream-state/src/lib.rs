//! slipstream's embedded state store: the SLO engine's state, kept across restarts.
//!
//! [`StateStore`] is a small key-value store in one [redb](https://www.redb.org) file,
//! `<dir>/slipstream.redb` ([`DB_FILE`]). The application (`slipstream-app`) saves, every
//! `state.snapshot_interval` and at shutdown, the serialized `slipstream_slo::EngineState` of
//! the SLO engine under one key ([`StateStore::save`]: one durable write transaction, so a
//! crash or `kill -9` leaves the previous snapshot or the new one, never a mix) and reads it
//! back at start-up ([`StateStore::load`]) to hand it to `SloEngine::restore_state`.
//!
//! What the engine state holds, and how a restore matches it to the SLOs of the current
//! configuration (by SLO name and a fingerprint of what the data means: service,
//! `match_labels`, SLI kind and threshold, objective, period; alert rows by severity and
//! windows), is documented in `slipstream-slo`. This crate stores bytes: it does not know
//! their format.
//!
//! The file carries its own layout version ([`STORE_FORMAT`], in a `meta` table) and every
//! page is checked when the file is opened, so a file that is not ours, damaged, or written
//! by a newer slipstream fails to open with [`StateError::Corrupt`] or
//! [`StateError::Incompatible`] instead of being misread. The application then logs the
//! error, moves the file aside with [`StateStore::quarantine`] (`slipstream.redb.corrupt-<unix
//! time>`) and starts afresh: a bad file costs the SLO history, never a crash loop. A
//! directory that cannot be written (permissions, a full disk) is [`StateError::Io`] with
//! the path: not the file's fault, so it is not quarantined. [`StateError::InUse`] means
//! another process holds the file.
#![forbid(unsafe_code)]

mod store;

pub use store::{DB_FILE, STORE_FORMAT, StateError, StateStore};

#[cfg(test)]
mod tests;
