use common::cli::Command;

#[actix_web::main]
async fn main() -> anyhow::Result<()> {
    common::telemetry::init();
    let settings = billing::Settings::load()?;
    match common::cli::parse("billing") {
        Command::Migrate => billing::migrate(&settings),
        Command::Serve => Ok(billing::start(settings)?.await?),
    }
}
