//! Auth's settings: environment variables with local defaults (see `.env.example`).

use std::{path::Path, time::Duration};

use actix_web::cookie::Key;
use common::settings::{ClientSettings, DatabaseSettings, ServerSettings};
use rand::RngCore;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha512};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Settings {
    #[serde(flatten)]
    pub server: ServerSettings,
    #[serde(flatten)]
    pub database: DatabaseSettings,
    #[serde(flatten)]
    pub client: ClientSettings,
    /// `BILLING_URL`: where billing's internal API is (to open accounts at registration).
    pub billing_url: String,
    /// `SESSION_TTL`: how long a login lasts (`24h`, `30m`, …).
    #[serde(with = "common::settings::duration")]
    pub session_ttl: Duration,
    /// `SESSION_KEY`: at least 64 bytes that encrypt the session cookie, the same on every
    /// replica (a Kubernetes Secret). Unset: read from, or created in, `SESSION_KEY_FILE`.
    #[serde(skip_serializing)]
    pub session_key: Option<SecretString>,
    /// `SESSION_KEY_FILE`: where the local key lives when `SESSION_KEY` is unset.
    pub session_key_file: String,
    /// `SESSION_COOKIE_SECURE`: mark the cookie `Secure` (only sent over HTTPS).
    pub session_cookie_secure: bool,
    /// `SESSION_CLEANUP_INTERVAL`: how often expired sessions are deleted.
    #[serde(with = "common::settings::duration")]
    pub session_cleanup_interval: Duration,
    /// `SESSION_CACHE_SIZE`: sessions the forward-auth check keeps in memory (0: none, every
    /// check reads the database). Revocations reach every replica's cache within
    /// milliseconds (`auth::session_cache`).
    pub session_cache_size: usize,
    /// `DATABASE_LISTEN_URL`: where the session cache `LISTEN`s for revocations (PostgreSQL
    /// only). Unset: `DATABASE_URL`. Set it when `DATABASE_URL` goes through a pooler in
    /// transaction mode, which hands each transaction any server connection, so a `LISTEN`
    /// would stay behind on one that others then use: point it at PostgreSQL itself, or at a
    /// session-mode pool.
    pub database_listen_url: Option<String>,
    /// `BCRYPT_COST`: bcrypt work factor, 4–31 (each step doubles the time; 12 ≈ 250 ms).
    pub bcrypt_cost: u32,
    /// `LOGIN_MAX_FAILURES`: failed logins for one login within `LOGIN_FAILURE_WINDOW` after
    /// which further attempts are refused with 429 until the window closes.
    pub login_max_failures: u32,
    /// `LOGIN_FAILURE_WINDOW`: the window failed logins are counted in (`15m`).
    #[serde(with = "common::settings::duration")]
    pub login_failure_window: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            server: ServerSettings::local(8001),
            database: DatabaseSettings::local("auth"),
            client: ClientSettings::default(),
            billing_url: "http://127.0.0.1:8002".into(),
            session_ttl: Duration::from_secs(24 * 3600),
            session_key: None,
            session_key_file: "data/auth-session.key".into(),
            session_cookie_secure: false,
            session_cleanup_interval: Duration::from_secs(600),
            session_cache_size: 10_000,
            database_listen_url: None,
            bcrypt_cost: 12,
            login_max_failures: 5,
            login_failure_window: Duration::from_secs(15 * 60),
        }
    }
}

impl Settings {
    /// From the environment, checked.
    pub fn load() -> anyhow::Result<Self> {
        let settings: Self = common::settings::load()?;
        settings.validate()?;
        Ok(settings)
    }

    pub fn validate(&self) -> anyhow::Result<()> {
        if let Some(url) = &self.database_listen_url {
            anyhow::ensure!(
                matches!(
                    common::db::DatabaseUrl::parse(url),
                    Ok(common::db::DatabaseUrl::Postgres(_))
                ),
                "invalid setting DATABASE_LISTEN_URL: {:?} is not a postgres://… URL",
                common::db::redacted_url(url)
            );
        }
        anyhow::ensure!(
            (4..=31).contains(&self.bcrypt_cost),
            "invalid setting BCRYPT_COST: must be 4 to 31"
        );
        anyhow::ensure!(
            self.session_ttl.as_secs() >= 60,
            "invalid setting SESSION_TTL: must be at least 1m"
        );
        anyhow::ensure!(
            self.login_max_failures >= 1,
            "invalid setting LOGIN_MAX_FAILURES: must be at least 1"
        );
        anyhow::ensure!(
            !self.login_failure_window.is_zero(),
            "invalid setting LOGIN_FAILURE_WINDOW: must be more than 0"
        );
        anyhow::ensure!(
            !self.session_cleanup_interval.is_zero(),
            "invalid setting SESSION_CLEANUP_INTERVAL: must be more than 0"
        );
        Ok(())
    }

    /// The cookie key: `SESSION_KEY`, else the key file (created with 64 random bytes on
    /// first start, readable by the owner only).
    pub fn cookie_key(&self) -> anyhow::Result<Key> {
        let material = match &self.session_key {
            Some(key) => key.expose_secret().as_bytes().to_vec(),
            None => read_or_create_key_file(Path::new(&self.session_key_file))?,
        };
        anyhow::ensure!(
            material.len() >= 64,
            "invalid setting SESSION_KEY: must be at least 64 bytes"
        );
        // `Key::from` would use only the first 64 bytes (encryption: bytes 32..64); derive the
        // key from all of the secret so every byte of it counts.
        Ok(Key::from(Sha512::digest(&material).as_slice()))
    }
}

fn read_or_create_key_file(path: &Path) -> anyhow::Result<Vec<u8>> {
    let context = |what: &str, e: std::io::Error| {
        anyhow::anyhow!("SESSION_KEY_FILE {}: cannot {what}: {e}", path.display())
    };
    match std::fs::read(path) {
        Ok(bytes) => Ok(bytes.trim_ascii().to_vec()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir).map_err(|e| context("create its directory", e))?;
            }
            let mut raw = [0u8; 64];
            rand::rng().fill_bytes(&mut raw);
            let text = hex::encode(raw);
            write_private(path, text.as_bytes()).map_err(|e| context("create it", e))?;
            tracing::info!(path = %path.display(), "created the session key file");
            Ok(text.into_bytes())
        }
        Err(e) => Err(context("read it", e)),
    }
}

fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)?.write_all(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_short_session_key_is_refused() {
        let settings = Settings {
            session_key: Some("short".into()),
            ..Settings::default()
        };
        let err = settings.cookie_key().err().expect("refused");
        assert!(err.to_string().contains("SESSION_KEY"));
    }

    #[test]
    fn the_key_file_is_created_once_and_reused() {
        let dir = std::env::temp_dir().join(format!("auth-key-{}", std::process::id()));
        let file = dir.join("k.key").to_string_lossy().into_owned();
        let settings = Settings {
            session_key_file: file.clone(),
            ..Settings::default()
        };
        let first = read_or_create_key_file(Path::new(&file)).unwrap();
        assert_eq!(first.len(), 128);
        assert_eq!(read_or_create_key_file(Path::new(&file)).unwrap(), first);
        assert!(settings.cookie_key().is_ok());
        std::fs::remove_file(&file).unwrap();
        std::fs::remove_dir(&dir).unwrap();
    }

    #[test]
    fn secrets_never_appear_in_debug_output() {
        let settings = Settings {
            session_key: Some("k".repeat(64).into()),
            ..Settings::default()
        };
        assert!(!format!("{settings:?}").contains(&"k".repeat(64)));
    }

    #[test]
    fn out_of_range_costs_are_refused() {
        assert!(
            Settings {
                bcrypt_cost: 3,
                ..Settings::default()
            }
            .validate()
            .is_err()
        );
        assert!(Settings::default().validate().is_ok());
    }

    #[test]
    fn the_listen_url_and_the_statement_cache_are_read_and_checked() {
        let settings: Settings = common::settings::load_from([
            ("DATABASE_LISTEN_URL", "postgres://auth:pw@db:5432/auth"),
            ("DB_STATEMENT_CACHE", "false"),
        ])
        .unwrap();
        assert!(settings.validate().is_ok());
        assert!(!settings.database.db_statement_cache);
        assert!(Settings::default().database.db_statement_cache);
        let sqlite = Settings {
            database_listen_url: Some("data/auth.db".into()),
            ..Settings::default()
        };
        let err = sqlite
            .validate()
            .expect_err("LISTEN needs PostgreSQL")
            .to_string();
        assert!(
            err.starts_with("invalid setting DATABASE_LISTEN_URL"),
            "{err}"
        );
        let err = common::settings::load_from::<Settings, _, _, _>([("DB_STATEMENT_CACHE", "off")])
            .expect_err("a bool")
            .to_string();
        assert!(err.contains("DB_STATEMENT_CACHE"), "{err}");
    }
}
