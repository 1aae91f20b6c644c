//! Logging: `env_logger` with `RUST_LOG` (default `info`), one line per event, each carrying
//! the request id of the request it belongs to.

use std::io::Write;

/// Initialises logging once; later calls (several services in one process, tests) are no-ops.
pub fn init() {
    let env = env_logger::Env::default().default_filter_or("info,actix_server=warn");
    let _ = env_logger::Builder::from_env(env)
        .format(|buf, record| {
            let ts = buf.timestamp_millis();
            let level = record.level();
            let target = record.target();
            match crate::request_id::current() {
                Some(id) => writeln!(buf, "{ts} {level:<5} {target} [{id}] {}", record.args()),
                None => writeln!(buf, "{ts} {level:<5} {target} {}", record.args()),
            }
        })
        .try_init();
}

/// Logging for tests: quiet unless `TEST_LOG` is set, so failures are readable.
pub fn init_for_tests() {
    if std::env::var_os("TEST_LOG").is_some() {
        init();
    }
}
