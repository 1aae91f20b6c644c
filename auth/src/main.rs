use common::cli::Command;

#[actix_web::main]
async fn main() -> anyhow::Result<()> {
    let _telemetry = common::telemetry::init();
    // arguments first: `--help` works even when a setting is wrong
    let command = common::cli::parse("auth");
    let settings = auth::Settings::load()?;
    match command {
        Command::Migrate => auth::migrate(&settings),
        Command::Serve => Ok(auth::start(settings)?.await?),
    }
}
