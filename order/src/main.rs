use common::cli::Command;

#[actix_web::main]
async fn main() -> anyhow::Result<()> {
    let _telemetry = common::telemetry::init();
    // arguments first: `--help` works even when a setting is wrong
    let command = common::cli::parse("order");
    let settings = order::Settings::load()?;
    match command {
        Command::Migrate => order::migrate(&settings),
        Command::Serve => Ok(order::start(settings)?.await?),
    }
}
