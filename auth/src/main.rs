use common::cli::Command;

#[actix_web::main]
async fn main() -> anyhow::Result<()> {
    common::telemetry::init();
    let settings = auth::Settings::load()?;
    match common::cli::parse("auth") {
        Command::Migrate => auth::migrate(&settings),
        Command::Serve => Ok(auth::start(settings)?.await?),
    }
}
