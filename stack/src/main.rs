//! `cargo run`: the whole shop on this machine (see the crate docs for settings).
//! `cargo run -- openapi` prints the public API's OpenAPI description instead.

const USAGE: &str = "usage: stack [openapi]

  (no argument)  run the whole shop: four services and the gateway (see README.md)
  openapi        print the OpenAPI 3.1 description of the public API and exit";

#[actix_web::main]
async fn main() -> anyhow::Result<()> {
    match std::env::args().nth(1).as_deref() {
        None => {}
        Some("openapi") => {
            println!("{}", stack::openapi().to_pretty_json()?);
            return Ok(());
        }
        Some("-h" | "--help" | "help") => {
            println!("{USAGE}");
            return Ok(());
        }
        Some(other) => anyhow::bail!("unknown argument {other:?}\n\n{USAGE}"),
    }
    let _telemetry = common::telemetry::init();
    let stack = stack::start(&stack::StackSettings::from_env()?)?;
    println!("{}", stack.banner());
    stack.run().await?;
    println!("shop stopped");
    Ok(())
}
