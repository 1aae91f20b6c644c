use common::cli::Command;

#[actix_web::main]
async fn main() -> anyhow::Result<()> {
    let _telemetry = common::telemetry::init();
    // arguments first: `--help` works even when a setting is wrong
    let command = common::cli::parse("notification");
    let settings = notification::Settings::load()?;
    match command {
        Command::Migrate => notification::migrate(&settings),
        Command::Serve => Ok(notification::start(settings)?.await?),
    }
}
