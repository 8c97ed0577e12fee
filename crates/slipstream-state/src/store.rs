//! The redb file, its layout version and the errors a caller can act on.

use std::io;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition, TableHandle};

/// The file name of the store inside its directory.
pub const DB_FILE: &str = "slipstream.redb";
/// The layout version of the store this build writes and reads (kept in the `meta` table).
pub const STORE_FORMAT: u32 = 1;

const META: TableDefinition<&str, u32> = TableDefinition::new("meta");
const FORMAT_KEY: &str = "format_version";
const DATA: TableDefinition<&str, &[u8]> = TableDefinition::new("state");

/// What went wrong with the state store.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// The directory or the file cannot be created, read or written: permissions, a full
    /// disk, a read-only file system. Not the file's fault: do not quarantine it.
    #[error("state store {}: {source}", path.display())]
    Io {
        /// The directory or file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The file is damaged or not a slipstream state store. Quarantine it and start afresh.
    #[error("state store {} is corrupt ({detail}); move it aside and start afresh", path.display())]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What the check found.
        detail: String,
    },
    /// The file is a state store of another layout (a newer or older slipstream, another
    /// redb file format). Quarantine it and start afresh.
    #[error("state store {} is incompatible: {detail}", path.display())]
    Incompatible {
        /// The file.
        path: PathBuf,
        /// Which version was found and which is expected.
        detail: String,
    },
    /// Another process (or another `StateStore` in this one) has the file open.
    #[error("state store {} is in use by another process", path.display())]
    InUse {
        /// The file.
        path: PathBuf,
    },
    /// Any other failure of the embedded database.
    #[error("state store {}: {detail}", path.display())]
    Database {
        /// The file.
        path: PathBuf,
        /// The database's message.
        detail: String,
    },
}

impl StateError {
    /// Whether the file itself is bad (corrupt or incompatible): the caller should
    /// [`quarantine`](StateStore::quarantine) it and start afresh.
    pub fn is_bad_file(&self) -> bool {
        matches!(
            self,
            StateError::Corrupt { .. } | StateError::Incompatible { .. }
        )
    }

    fn from_redb(path: &Path, e: impl Into<redb::Error>) -> StateError {
        let path = path.to_owned();
        match e.into() {
            redb::Error::Io(source) => match source.kind() {
                // A file cut short or not a redb file at all.
                io::ErrorKind::UnexpectedEof | io::ErrorKind::InvalidData => StateError::Corrupt {
                    path,
                    detail: source.to_string(),
                },
                _ => StateError::Io { path, source },
            },
            redb::Error::Corrupted(detail) => StateError::Corrupt { path, detail },
            redb::Error::UpgradeRequired(v) => StateError::Incompatible {
                path,
                detail: format!("redb file format {v} needs an upgrade"),
            },
            e @ (redb::Error::TableTypeMismatch { .. }
            | redb::Error::TypeDefinitionChanged { .. }
            | redb::Error::TableIsMultimap(_)) => StateError::Incompatible {
                path,
                detail: e.to_string(),
            },
            redb::Error::DatabaseAlreadyOpen | redb::Error::LockProtocolMismatch => {
                StateError::InUse { path }
            }
            e => StateError::Database {
                path,
                detail: e.to_string(),
            },
        }
    }
}

/// Runs `f`, turning a panic inside the database (which a damaged file may cause) into
/// [`StateError::Corrupt`].
fn guarded<T>(path: &Path, f: impl FnOnce() -> Result<T, StateError>) -> Result<T, StateError> {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|panic| {
        let detail = panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
            .unwrap_or_else(|| "the database panicked reading it".to_owned());
        Err(StateError::Corrupt {
            path: path.to_owned(),
            detail,
        })
    })
}

/// The embedded state store: byte values under string keys in `<dir>/slipstream.redb`.
pub struct StateStore {
    db: Database,
    path: PathBuf,
}

impl std::fmt::Debug for StateStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StateStore")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl StateStore {
    /// The store's file in `dir`.
    pub fn file(dir: &Path) -> PathBuf {
        dir.join(DB_FILE)
    }

    /// Opens the store in `dir`, creating the directory and the file when missing. Every
    /// page of an existing file is checked (a few milliseconds for a few megabytes) and its
    /// layout version must be [`STORE_FORMAT`].
    pub fn open(dir: &Path) -> Result<StateStore, StateError> {
        std::fs::create_dir_all(dir).map_err(|source| StateError::Io {
            path: dir.to_owned(),
            source,
        })?;
        let path = Self::file(dir);
        guarded(&path, || {
            let db = Database::builder()
                .set_check_integrity_on_open(true)
                .create(&path)
                .map_err(|e| StateError::from_redb(&path, e))?;
            let store = StateStore {
                db,
                path: path.clone(),
            };
            store.check_format()?;
            Ok(store)
        })
    }

    /// Reads the layout version; writes it into a new (empty) file.
    fn check_format(&self) -> Result<(), StateError> {
        let err = |e: redb::Error| StateError::from_redb(&self.path, e);
        let txn = self.db.begin_write().map_err(|e| err(e.into()))?;
        let tables: Vec<String> = txn
            .list_tables()
            .map_err(|e| err(e.into()))?
            .map(|t| t.name().to_owned())
            .collect();
        let found = if tables.iter().any(|t| t == META.name()) {
            let meta = txn.open_table(META).map_err(|e| err(e.into()))?;
            let v = meta.get(FORMAT_KEY).map_err(|e| err(e.into()))?;
            v.map(|v| v.value())
        } else {
            None
        };
        match found {
            Some(STORE_FORMAT) => Ok(()),
            Some(v) => Err(StateError::Incompatible {
                path: self.path.clone(),
                detail: format!("layout version {v}, this build reads version {STORE_FORMAT} only"),
            }),
            None if !tables.is_empty() => Err(StateError::Incompatible {
                path: self.path.clone(),
                detail: format!(
                    "a redb file without slipstream's layout version (tables: {})",
                    tables.join(", ")
                ),
            }),
            None => {
                {
                    let mut meta = txn.open_table(META).map_err(|e| err(e.into()))?;
                    meta.insert(FORMAT_KEY, STORE_FORMAT)
                        .map_err(|e| err(e.into()))?;
                }
                txn.commit().map_err(|e| err(e.into()))
            }
        }
    }

    /// The store's file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Stores `value` under `key`, replacing what was there, in one durable write
    /// transaction: when it returns `Ok` the value is on disk; after a crash either the old
    /// or the new value is there.
    pub fn save(&self, key: &str, value: &[u8]) -> Result<(), StateError> {
        let err = |e: redb::Error| StateError::from_redb(&self.path, e);
        guarded(&self.path, || {
            let txn = self.db.begin_write().map_err(|e| err(e.into()))?;
            {
                let mut table = txn.open_table(DATA).map_err(|e| err(e.into()))?;
                table.insert(key, value).map_err(|e| err(e.into()))?;
            }
            txn.commit().map_err(|e| err(e.into()))
        })
    }

    /// The value stored under `key`, if any.
    pub fn load(&self, key: &str) -> Result<Option<Vec<u8>>, StateError> {
        let err = |e: redb::Error| StateError::from_redb(&self.path, e);
        guarded(&self.path, || {
            let txn = self.db.begin_read().map_err(|e| err(e.into()))?;
            let table = match txn.open_table(DATA) {
                Ok(t) => t,
                Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
                Err(e) => return Err(err(e.into())),
            };
            let value = table.get(key).map_err(|e| err(e.into()))?;
            Ok(value.map(|v| v.value().to_vec()))
        })
    }

    /// Moves the store's file in `dir` aside, as `slipstream.redb.corrupt-<unix seconds>`
    /// (with `-<n>` appended when that name is taken), so that the next
    /// [`open`](Self::open) starts afresh; returns the new path. Call it with the store
    /// closed (after a failed `open`).
    pub fn quarantine(dir: &Path) -> Result<PathBuf, StateError> {
        let from = Self::file(dir);
        let secs = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let base = format!("{DB_FILE}.corrupt-{secs}");
        let mut to = dir.join(&base);
        let mut n = 1;
        while to.exists() {
            to = dir.join(format!("{base}-{n}"));
            n += 1;
        }
        std::fs::rename(&from, &to).map_err(|source| StateError::Io { path: from, source })?;
        Ok(to)
    }
}
