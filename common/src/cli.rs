//! The command line every service binary shares: `serve` (default) or `migrate`.

/// What the binary was asked to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// Apply pending migrations, then serve HTTP.
    Serve,
    /// Apply pending migrations and exit: the Kubernetes init container.
    Migrate,
}

/// Parses `std::env::args`; prints usage and exits on `--help` or a wrong argument.
pub fn parse(service: &str) -> Command {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        [] | ["serve"] => Command::Serve,
        ["migrate"] => Command::Migrate,
        ["-h" | "--help" | "help"] => {
            println!("{}", usage(service));
            std::process::exit(0)
        }
        other => {
            eprintln!("unknown arguments {other:?}\n\n{}", usage(service));
            std::process::exit(2)
        }
    }
}

fn usage(service: &str) -> String {
    format!(
        "usage: {service} [serve|migrate]\n\n  \
         serve    apply pending database migrations, then serve HTTP (default)\n  \
         migrate  apply pending database migrations and exit\n\n\
         Settings come from environment variables; see .env.example."
    )
}
