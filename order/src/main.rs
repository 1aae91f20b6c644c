use common::cli::Command;

#[actix_web::main]
async fn main() -> anyhow::Result<()> {
    common::telemetry::init();
    let settings = order::Settings::load()?;
    match common::cli::parse("order") {
        Command::Migrate => order::migrate(&settings),
        Command::Serve => Ok(order::start(settings)?.await?),
    }
}
