//! Order's settings: environment variables with local defaults (see `.env.example`).

use std::time::Duration;

use common::settings::{ClientSettings, DatabaseSettings, ServerSettings};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Settings {
    #[serde(flatten)]
    pub server: ServerSettings,
    #[serde(flatten)]
    pub database: DatabaseSettings,
    #[serde(flatten)]
    pub client: ClientSettings,
    /// `BILLING_URL`: billing's internal API (payments).
    pub billing_url: String,
    /// `NOTIFICATION_URL`: notification's internal API.
    pub notification_url: String,
    /// `OUTBOX_POLL_INTERVAL`: how often undelivered messages are looked for.
    #[serde(with = "common::settings::duration")]
    pub outbox_poll_interval: Duration,
    /// `OUTBOX_MAX_BACKOFF`: the longest wait between two delivery attempts of a message.
    #[serde(with = "common::settings::duration")]
    pub outbox_max_backoff: Duration,
    /// `OUTBOX_MAX_ATTEMPTS`: failed deliveries after which a message is set aside and logged
    /// as an error instead of retried (100 ≈ 8 hours at the default backoff cap).
    pub outbox_max_attempts: u32,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            server: ServerSettings::local(8003),
            database: DatabaseSettings::local("order"),
            client: ClientSettings::default(),
            billing_url: "http://127.0.0.1:8002".into(),
            notification_url: "http://127.0.0.1:8004".into(),
            outbox_poll_interval: Duration::from_secs(1),
            outbox_max_backoff: Duration::from_secs(300),
            outbox_max_attempts: 100,
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
        anyhow::ensure!(
            !self.outbox_poll_interval.is_zero(),
            "invalid setting OUTBOX_POLL_INTERVAL: must be more than 0"
        );
        anyhow::ensure!(
            self.outbox_max_backoff >= Duration::from_secs(1),
            "invalid setting OUTBOX_MAX_BACKOFF: must be at least 1s"
        );
        Ok(())
    }
}
