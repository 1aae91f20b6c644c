//! `cargo run`: the whole shop on this machine (see the crate docs for settings).

#[actix_web::main]
async fn main() -> anyhow::Result<()> {
    common::telemetry::init();
    let stack = stack::start(&stack::StackSettings::from_env()?)?;
    println!("{}", stack.banner());
    stack.run().await?;
    println!("shop stopped");
    Ok(())
}
