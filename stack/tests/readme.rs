//! The README's quick start, followed literally: the binary `cargo run` runs, on a fresh data
//! directory, then step 2's curl walkthrough typed into one `bash`. Every command's output must
//! be the one pasted in the README, timestamps aside; step 1's banner must be the one pasted
//! there, with this run's ports in place of 8000–8004.
//!
//! Every server listens on port 0, so the system picks free loopback ports with no race (a port
//! found free beforehand can be taken before the stack binds it: it happened under parallel
//! runs); the banner's own table says which, and the README's ports stand for those.
//!
//! Both passes of the test command run this on SQLite, `TEST_DATABASE_URL` or not: the README
//! documents `cargo run` with its defaults, so the stack gets none of the test's environment
//! and keeps its data in `data/` under a fresh directory, as on a fresh checkout.
//!
//! Needs `bash` and `curl` (the test command installs curl).

use std::{
    fs::File,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    thread,
    time::{Duration, Instant},
};

const README: &str = include_str!("../../README.md");

/// How long a debug build on a loaded 2-core machine may take to answer its first request.
const START_DEADLINE: Duration = Duration::from_secs(60);
/// How long the whole walkthrough may take (about a second when idle).
const WALKTHROUGH_DEADLINE: Duration = Duration::from_secs(120);

/// The gateway as the README shows it, in step 1's table and in step 2's `G=`.
const README_GATEWAY: &str = "http://127.0.0.1:8000";

/// Ends a command's output in the shell's stdout, followed by the command's index and status.
const MARKER: &str = "@@readme-walkthrough-command-done@@";

/// One `$ ` line of a README console block and the lines pasted after it.
#[derive(Debug)]
struct Step {
    command: String,
    expected: Vec<String>,
}

/// The ```console blocks of the README's "Quick start" section, as steps.
fn quick_start_blocks() -> Vec<Vec<Step>> {
    let section: Vec<&str> = README
        .lines()
        .skip_while(|l| l.trim_end() != "## Quick start")
        .skip(1)
        .take_while(|l| !l.starts_with("## "))
        .collect();
    assert!(
        !section.is_empty(),
        "README.md has no \"## Quick start\" section"
    );
    let mut blocks = Vec::new();
    let mut lines = section.into_iter();
    while let Some(line) = lines.next() {
        if line.trim() != "```console" {
            continue;
        }
        // blocks sit inside a numbered list: their lines carry the fence's indentation
        let indent = line.len() - line.trim_start().len();
        let mut steps: Vec<Step> = Vec::new();
        for line in lines.by_ref() {
            if line.trim() == "```" {
                break;
            }
            let line = line.get(indent..).unwrap_or("").trim_end();
            match line.strip_prefix("$ ") {
                Some(command) => steps.push(Step {
                    command: command.to_string(),
                    expected: Vec::new(),
                }),
                None => steps
                    .last_mut()
                    .unwrap_or_else(|| {
                        panic!("README: console block output before any `$ `: {line:?}")
                    })
                    .expected
                    .push(line.to_string()),
            }
        }
        blocks.push(steps);
    }
    blocks
}

/// The one Quick start block with a command that satisfies `is_it`.
fn block(blocks: &mut Vec<Vec<Step>>, what: &str, is_it: impl Fn(&str) -> bool) -> Vec<Step> {
    let found: Vec<usize> = (0..blocks.len())
        .filter(|&i| blocks[i].iter().any(|s| is_it(&s.command)))
        .collect();
    assert_eq!(
        found.len(),
        1,
        "README Quick start: expected exactly one console block with {what}"
    );
    blocks.remove(found[0])
}

/// `line` with every JSON string that is an RFC 3339 timestamp replaced by `<timestamp>`: the
/// one thing that differs between two runs. Splitting at every `"` looks at each string's
/// contents (and at the text between strings, which is never a timestamp on its own).
fn without_timestamps(line: &str) -> String {
    line.split('"')
        .map(|piece| match chrono::DateTime::parse_from_rfc3339(piece) {
            Ok(_) => "<timestamp>",
            Err(_) => piece,
        })
        .collect::<Vec<_>>()
        .join("\"")
}

/// The banner's lines as words, without the blank lines around it (it starts with one, to stand
/// apart from cargo's lines): its columns are padded to a width, and this run's 5-digit ports are
/// one character wider than the README's 4-digit ones, so the spaces between columns differ.
fn words(lines: &[String]) -> Vec<String> {
    let trimmed: Vec<&String> = lines.iter().skip_while(|l| l.trim().is_empty()).collect();
    let end = trimmed
        .iter()
        .rposition(|l| !l.trim().is_empty())
        .map_or(0, |i| i + 1);
    trimmed[..end]
        .iter()
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect()
}

/// The stack binary, killed by its pid when the test ends, passes or panics.
struct Stack {
    child: Child,
    dir: PathBuf,
}

impl Drop for Stack {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Stack {
    fn log(&self) -> String {
        let log = std::fs::read_to_string(self.dir.join("stack.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    /// Fails the test if the stack has exited.
    fn assert_running(&mut self, waiting_for: &str) {
        if let Some(status) = self.child.try_wait().expect("stack status") {
            panic!(
                "the stack exited ({status}) before {waiting_for}; its log:\n{}",
                self.log()
            );
        }
    }

    /// What the stack printed on stdout so far.
    fn printed(&self) -> Vec<String> {
        std::fs::read_to_string(self.dir.join("stack.out"))
            .unwrap_or_default()
            .lines()
            .map(String::from)
            .collect()
    }

    /// Waits for the banner's table to have every row the README's has; returns, for each
    /// README port, the port of this run's row of that name.
    fn wait_for_ports(&mut self, readme_rows: &[(String, String)]) -> Vec<(String, String)> {
        let deadline = Instant::now() + START_DEADLINE;
        loop {
            self.assert_running("printing its banner");
            let printed = rows(&self.printed());
            let ports: Vec<(String, String)> = readme_rows
                .iter()
                .filter_map(|(name, readme_port)| {
                    let (_, port) = printed.iter().find(|(n, _)| n == name)?;
                    Some((readme_port.clone(), port.clone()))
                })
                .collect();
            if ports.len() == readme_rows.len() {
                return ports;
            }
            assert!(
                Instant::now() < deadline,
                "the stack did not print a table with the README's rows {readme_rows:?} within \
                 {START_DEADLINE:?}; it printed:\n{}\nits log:\n{}",
                self.printed().join("\n"),
                self.log()
            );
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// Polls the gateway until it answers `GET /signin`, as a newcomer's first curl would.
    fn wait_until_ready(&mut self, gateway: &str) {
        let deadline = Instant::now() + START_DEADLINE;
        loop {
            self.assert_running("answering");
            let answered = Command::new("curl")
                .args(["-sf", "-o", "/dev/null", "--max-time", "5"])
                .arg(format!("{gateway}/signin"))
                .status()
                .expect("run curl (is it installed?)")
                .success();
            if answered {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the stack did not answer GET {gateway}/signin within {START_DEADLINE:?}; its \
                 log:\n{}",
                self.log()
            );
            thread::sleep(Duration::from_millis(100));
        }
    }
}

/// The banner's table: (name, port) of each line like `auth  http://127.0.0.1:8001  …`.
fn rows(lines: &[String]) -> Vec<(String, String)> {
    lines
        .iter()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            let name = words.next()?;
            let port = words.next()?.strip_prefix("http://127.0.0.1:")?;
            Some((name.to_string(), port.to_string()))
        })
        .collect()
}

/// `line` with the README's ports replaced by this run's.
fn with_ports(line: &str, ports: &[(String, String)]) -> String {
    ports.iter().fold(line.to_string(), |line, (readme, port)| {
        line.replace(&format!("127.0.0.1:{readme}"), &format!("127.0.0.1:{port}"))
    })
}

/// Runs `script` in `bash` in `dir` with only `PATH`, and `HOME` set to `dir` so that no
/// personal `~/.curlrc` changes curl's output; returns (stdout, stderr).
fn run_bash(dir: &Path, script: &str) -> (String, String) {
    let (out, err) = (dir.join("walkthrough.out"), dir.join("walkthrough.err"));
    let mut child = Command::new("bash")
        .arg("-c")
        .arg(script)
        .current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", dir)
        .stdin(Stdio::null())
        .stdout(File::create(&out).unwrap())
        .stderr(File::create(&err).unwrap())
        .spawn()
        .expect("run bash");
    let deadline = Instant::now() + WALKTHROUGH_DEADLINE;
    while child.try_wait().expect("bash status").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "the walkthrough did not finish within {WALKTHROUGH_DEADLINE:?}; so far:\n{}",
                std::fs::read_to_string(&out).unwrap_or_default()
            );
        }
        thread::sleep(Duration::from_millis(50));
    }
    (
        std::fs::read_to_string(out).unwrap(),
        std::fs::read_to_string(err).unwrap(),
    )
}

/// Splits the shell's stdout at the markers: (output lines, exit status) per command.
fn outputs(stdout: &str) -> Vec<(Vec<String>, i32)> {
    let mut outputs = Vec::new();
    let mut current: Vec<String> = Vec::new();
    for line in stdout.lines() {
        match line.strip_prefix(MARKER) {
            Some(rest) => {
                let mut fields = rest.split_whitespace();
                let index: usize = fields.next().unwrap().parse().unwrap();
                assert_eq!(index, outputs.len(), "markers out of order");
                let status = fields.next().unwrap().parse().unwrap();
                // the marker starts on a line of its own; a newline of the answer's own adds
                // an empty line, which the README cannot show
                while current.last().is_some_and(|l| l.is_empty()) {
                    current.pop();
                }
                outputs.push((std::mem::take(&mut current), status));
            }
            None => current.push(line.to_string()),
        }
    }
    outputs
}

/// `expected` against `printed`, line by line, each differing pair with a caret at the first
/// difference.
fn diff(expected: &[String], printed: &[String]) -> String {
    let mut text = String::new();
    for line in 0..expected.len().max(printed.len()) {
        match (expected.get(line), printed.get(line)) {
            (Some(e), Some(p)) if e == p => text += &format!("  same:    {e}\n"),
            (e, p) => {
                if let Some(e) = e {
                    text += &format!("  README:  {e}\n");
                }
                if let Some(p) = p {
                    text += &format!("  printed: {p}\n");
                }
                if let (Some(e), Some(p)) = (e, p) {
                    let at = e.chars().zip(p.chars()).take_while(|(a, b)| a == b).count();
                    let pad = " ".repeat(at);
                    text += &format!("           {pad}^ first difference, column {}\n", at + 1);
                }
            }
        }
    }
    text
}

#[test]
fn the_readme_quick_start_prints_what_it_shows() {
    let mut blocks = quick_start_blocks();
    let banner = block(&mut blocks, "`$ cargo run`", |c| c == "cargo run");
    let walkthrough = block(&mut blocks, "curl commands", |c| c.starts_with("curl "));

    // a directory of its own, as a fresh checkout: the stack's `data/`, curl's `jar`, the logs
    // (removed when the test ends, unless the comparison fails: then it is kept as evidence)
    let run_dir = common::testing::TestDir::new("readme");
    let dir = run_dir.path().to_path_buf();
    std::fs::create_dir_all(&dir).unwrap();
    let mut stack = Stack {
        child: Command::new(env!("CARGO_BIN_EXE_stack"))
            .current_dir(&dir)
            // the defaults `cargo run` has: no DATA_DIR (so `data/`), no database URLs
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .envs(
                ["GATEWAY", "AUTH", "BILLING", "ORDER", "NOTIFICATION"]
                    .map(|server| (format!("{server}_PORT"), "0")),
            )
            // the lowest cost bcrypt allows: a login in milliseconds, not a quarter second
            .env("AUTH_BCRYPT_COST", "4")
            .stdin(Stdio::null())
            .stdout(File::create(dir.join("stack.out")).unwrap())
            .stderr(File::create(dir.join("stack.log")).unwrap())
            .spawn()
            .expect("start the stack binary"),
        dir: dir.clone(),
    };
    let ports = stack.wait_for_ports(&rows(&banner[0].expected));
    let gateway = with_ports(README_GATEWAY, &ports);
    // never a stack someone runs on the README's ports
    assert_ne!(
        gateway, README_GATEWAY,
        "README step 1's table has no row for {README_GATEWAY}"
    );
    stack.wait_until_ready(&gateway);

    // step 1: the banner is printed whole before the gateway serves, so it is all there now
    let shown: Vec<String> = banner[0]
        .expected
        .iter()
        .map(|line| with_ports(line, &ports))
        .collect();
    let (shown, printed) = (words(&shown), words(&stack.printed()));
    let mut report = String::new();
    if shown != printed {
        report += "\n$ cargo run   (step 1; this run's ports, spacing ignored)\n";
        report += &diff(&shown, &printed);
    }

    // step 2: every command in one shell (they share G, J and the cookie jar), each followed by
    // a marker line with its index and exit status
    let commands: Vec<String> = walkthrough.iter().map(|s| s.command.clone()).collect();
    assert_eq!(
        commands
            .iter()
            .filter(|c| c.contains(&format!("G={README_GATEWAY}")))
            .count(),
        1,
        "README step 2 should set G={README_GATEWAY} once: the test points it at this run's gateway"
    );
    let mut script = String::from("set -u\n");
    for (i, command) in commands.iter().enumerate() {
        let command = with_ports(command, &ports);
        script += &format!("{command}\nprintf '\\n{MARKER} {i} %d\\n' $?\n");
    }
    let (stdout, stderr) = run_bash(&dir, &script);
    let outputs = outputs(&stdout);

    for (i, step) in walkthrough.iter().enumerate() {
        let Some((actual, status)) = outputs.get(i) else {
            report += &format!(
                "\n$ {}\n  did not finish: the shell stopped; its stderr:\n{stderr}\n",
                step.command
            );
            break;
        };
        let expected: Vec<String> = step
            .expected
            .iter()
            .map(|l| without_timestamps(l))
            .collect();
        let printed: Vec<String> = actual.iter().map(|l| without_timestamps(l)).collect();
        if expected != printed || *status != 0 {
            report += &format!(
                "\n$ {}   (step 2, command {}, exit status {status})\n",
                step.command,
                i + 1
            );
            report += &diff(&expected, &printed);
        }
    }
    drop(stack);
    if !report.is_empty() {
        panic!(
            "README Quick start and the system disagree (timestamps shown as <timestamp>; the \
             run is kept in {}):\n{report}",
            run_dir.keep().display()
        );
    }
}
