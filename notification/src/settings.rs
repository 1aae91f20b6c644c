//! Notification's settings: environment variables with local defaults (see `.env.example`).

use common::settings::{DatabaseSettings, ServerSettings};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Settings {
    #[serde(flatten)]
    pub server: ServerSettings,
    #[serde(flatten)]
    pub database: DatabaseSettings,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            server: ServerSettings::local(8004),
            database: DatabaseSettings::local("notification"),
        }
    }
}

impl Settings {
    /// From the environment.
    pub fn load() -> anyhow::Result<Self> {
        common::settings::load()
    }
}
