//! The `localproxy` binary: parse the command line, answer `--help`, `--version` and
//! `--export-default-settings` before any file is read, load and validate the
//! configuration, start logging, then either print it (`--check`) or run the proxy.
//!
//! Exit codes are decided here and only here, from the one table in [`localproxy::Exit`].
//! Nothing is printed on stdout except what was asked for (help, version, `--check`), and
//! every write ignores a closed pipe: `println!` would panic, and a panic aborts.

use localproxy::cli::{self, Command};
use localproxy::config::{self, ConfigError, Settings};
use localproxy::{logging, Exit};
use std::io::Write;

/// musl's malloc gives 64 KiB blocks back to the kernel on every free: cache them.
#[cfg(target_env = "musl")]
#[global_allocator]
static ALLOC: localproxy::sys::CachingAlloc = localproxy::sys::CachingAlloc::new();

/// How long the log queue may take to reach the console at exit.
const LOG_FLUSH: std::time::Duration = std::time::Duration::from_secs(2);

fn main() {
    let exit = run();
    // The last lines (why it stops) are in the log thread's queue: let them out, but a
    // console that does not drain does not keep the process alive.
    logging::flush(LOG_FLUSH);
    std::process::exit(exit.code());
}

fn out(text: &str) {
    let _ = std::io::stdout().lock().write_all(text.as_bytes());
}

/// One line naming the option, the problem and the fix, then the reference's hint line.
fn usage(e: &ConfigError) -> Exit {
    let _ = writeln!(
        std::io::stderr().lock(),
        "localproxy: {e}\nTry 'localproxy --help' for a list of options."
    );
    Exit::Usage
}

fn run() -> Exit {
    if std::env::args_os().len() <= 1 {
        // Nothing asked for at all: say how to use it, not what is missing first.
        eprint!("{}", cli::usage_summary());
        eprintln!("Try 'localproxy --help' for a list of options.");
        return Exit::Usage;
    }
    let args = match cli::parse(std::env::args_os().skip(1)) {
        Ok(Command::Help) => {
            out(&cli::help_text());
            return Exit::Ok;
        }
        Ok(Command::Version) => {
            out(&format!("localproxy {}\n", env!("CARGO_PKG_VERSION")));
            return Exit::Ok;
        }
        Ok(Command::Run(args)) => args,
        Err(e) => return usage(&e),
    };

    if let Some(path) = &args.export_default_settings {
        // `-` is stdout, as for --notification.
        if path.as_os_str() == "-" {
            out(&Settings::default().to_json());
            return Exit::Ok;
        }
        return match std::fs::write(path, Settings::default().to_json()) {
            Ok(()) => Exit::Ok,
            Err(e) => usage(&ConfigError::new(
                "--export-default-settings",
                format!("cannot write {}: {e}", path.display()),
                "give a path in a writable directory",
            )),
        };
    }

    let env = |name: &str| std::env::var(name).ok();
    let cwd = std::env::current_dir().ok();
    let loaded = match config::load(&args, &env, cwd.as_deref()) {
        Ok(l) => l,
        Err(e) => return usage(&e),
    };

    logging::init(
        loaded.config.verbosity,
        std::env::var("RUST_LOG").ok().as_deref(),
        logging::timestamps_wanted(std::env::var(logging::TIMESTAMPS_ENV).ok().as_deref()),
    );

    let mut config = loaded.config;
    let purpose = if args.check {
        localproxy::run::Purpose::Check
    } else {
        localproxy::run::Purpose::Run
    };
    // The same checks for --check and for a run, before anything connects: a set-up
    // error never uses the access token.
    let mut warnings: Vec<String> = loaded.warnings.clone();
    let checked = match localproxy::run::check(&mut config, purpose, &mut warnings) {
        Ok(c) => c,
        Err(e) => {
            for w in &warnings {
                log::warn!("{w}");
            }
            // The usage line goes straight to stderr: after the queued warnings.
            logging::flush(LOG_FLUSH);
            return usage(&e);
        }
    };
    if args.check {
        for w in &warnings {
            log::warn!("{w}");
        }
        let mut text = config.describe();
        text.push_str(&checked.report(&config, warnings.len()));
        logging::flush(LOG_FLUSH);
        out(&text);
        return Exit::Ok;
    }
    localproxy::run::run(config, checked, &warnings)
}
