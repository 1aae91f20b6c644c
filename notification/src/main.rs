use common::cli::Command;

#[actix_web::main]
async fn main() -> anyhow::Result<()> {
    common::telemetry::init();
    let settings = notification::Settings::load()?;
    match common::cli::parse("notification") {
        Command::Migrate => notification::migrate(&settings),
        Command::Serve => Ok(notification::start(settings)?.await?),
    }
}
