use common::cli::Command;

#[actix_web::main]
async fn main() -> anyhow::Result<()> {
    let _telemetry = common::telemetry::init();
    // arguments first: `--help` works even when a setting is wrong
    let command = common::cli::parse("billing");
    let settings = billing::Settings::load()?;
    match command {
        Command::Migrate => billing::migrate(&settings),
        Command::Serve => Ok(billing::start(settings)?.await?),
    }
}
