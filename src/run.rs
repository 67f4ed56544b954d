//! The main thread's part of a run: build the TLS connector, block the signals, spawn
//! the tunnel and local threads, wait for a signal or for a thread to finish, stop the
//! other thread, and turn the outcome into an exit code.
//!
//! Stopping is bounded: after SIGTERM/SIGINT the threads get [`STOP_TIMEOUT`] to send
//! the close frame and flush local sockets; then the process exits regardless (a thread
//! may still be inside a connect attempt, which websocket.connect_timeout_ms bounds).

use crate::config::{Config, Mode};
use crate::link::{Limits, Shared, ToLocal, ToTunnel};
use crate::local::LocalThread;
use crate::sys::{self, SIGHUP, SIGINT, SIGTERM, SIGUSR1, SIGUSR2};
use crate::token::{self, ClientTokenSource};
use crate::trust;
use crate::tunnel::{connect, proxy, Prepared, TunnelThread};
use crate::Exit;
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

/// How long the threads may take to stop after a signal.
pub(crate) const STOP_TIMEOUT: Duration = Duration::from_millis(1800);

const SIGNALS: [i32; 5] = [SIGTERM, SIGINT, SIGHUP, SIGUSR1, SIGUSR2];

/// Runs the proxy until the tunnel ends or a signal stops it.
pub fn run(mut config: Config) -> Exit {
    if config.require_non_root && config.user.is_none() && sys::is_root() {
        log::error!(
            "refusing to run as root (--require-non-root); give --user NAME[:GROUP] or start it as another user"
        );
        return Exit::Usage;
    }
    let privileges = match &config.user {
        Some(spec) => match sys::lookup_user(spec) {
            Ok(ids) => Some(ids),
            Err(e) => {
                log::error!("--user: {e}; give an existing user (and group)");
                return Exit::Usage;
            }
        },
        None => None,
    };
    match token::client_token(
        config.client_token.as_ref(),
        config.client_token_file.as_deref(),
    ) {
        Ok((t, source)) => {
            match source {
                ClientTokenSource::Generated => log::info!(
                    "no client token given: using a random one for this process so reconnects can reuse the access token"
                ),
                ClientTokenSource::Stored => log::info!("client token made and stored in --client-token-file"),
                ClientTokenSource::File => log::info!("client token read from --client-token-file"),
                ClientTokenSource::Given => {}
            }
            config.client_token = Some(t);
        }
        Err(e) => {
            log::error!("{e}");
            return Exit::Usage;
        }
    }
    // A destination binds nothing: drop privileges now. A source drops them once its
    // listeners are bound (the tunnel thread does it).
    let privileges = match (config.mode, privileges) {
        (Mode::Destination, Some((uid, gid))) => {
            if let Err(e) = sys::drop_privileges(uid, gid) {
                log::error!(
                    "cannot switch to --user {}: {e}",
                    config.user.as_deref().unwrap_or("")
                );
                return Exit::Internal;
            }
            None
        }
        (_, p) => p,
    };
    let env = |k: &str| std::env::var(k).ok();
    let web_proxy = match proxy::from_env(&config.endpoint.host, &env) {
        Ok(p) => p,
        Err(e) => {
            log::error!("{e}; fix or unset the proxy variable");
            return Exit::Usage;
        }
    };
    let store = trust::choose_here();
    for place in &store.ignored {
        log::warn!("{place} holds no usable CA certificate (a PEM file, or a directory hashed with `openssl rehash`); ignoring it");
    }
    log::info!("trust store: {}", store.describe());
    log::info!("TLS cipher order: {}", tls_cipher_order());
    let tls = match connect::tls_connector(
        Some(&store),
        config.capath.as_deref(),
        config.no_ssl_host_verify,
    ) {
        Ok(t) => t,
        Err(e) => {
            log::error!("{e}");
            return Exit::Usage;
        }
    };
    if let Err(e) = sys::block_signals(&SIGNALS) {
        log::error!("cannot block signals: {e}");
        return Exit::Internal;
    }
    // Everything that needs more than the sandbox allows is done; no thread runs yet.
    crate::sandbox::start(&config, &store, privileges.is_some());
    let prepared = Prepared {
        tls,
        privileges,
        web_proxy,
    };
    match spawn_and_wait(config, prepared) {
        Ok(x) => x,
        Err(e) => {
            log::error!("{e}");
            Exit::Internal
        }
    }
}

fn spawn_and_wait(config: Config, prepared: Prepared) -> std::io::Result<Exit> {
    let s = &config.settings;
    let limits = Limits {
        // Each local read becomes one DATA message: no larger than either allows.
        read_chunk: s.tcp_read_buffer_size.min(s.max_payload_size),
        to_tunnel_max: s.ws_write_buffer_size.max(s.max_payload_size),
        to_local_max: s.tcp_write_buffer_size.max(s.max_payload_size),
        retry_count: s.tcp_connection_retry_count,
        retry_delay: Duration::from_millis(s.tcp_connection_retry_delay_ms),
    };
    // Two channels into the tunnel thread, one waker: local events (which it stops
    // taking while the WebSocket is backed up) and main's requests (always taken).
    let tunnel_waker = sys::Waker::new()?;
    let (tunnel_tx, tunnel_rx) = sys::channel_with::<ToTunnel>(tunnel_waker.clone());
    let (main_tx, main_rx) = sys::channel_with::<ToTunnel>(tunnel_waker);
    let (local_tx, local_rx) = sys::channel_with::<ToLocal>(sys::Waker::new()?);
    let shared = Arc::new(Shared::default());
    let outcome: Arc<Mutex<Option<Exit>>> = Arc::new(Mutex::new(None));
    let (done_tx, done_rx) = mpsc::channel::<()>();

    let local_thread = LocalThread::new(
        limits.clone(),
        local_rx,
        local_tx.clone(),
        tunnel_tx.clone(),
        shared.clone(),
    );
    let out = outcome.clone();
    let done = done_tx.clone();
    std::thread::Builder::new()
        .name("local".into())
        .spawn(move || {
            if let Err(e) = local_thread.run() {
                log::error!("local sockets failed: {e}");
                finish(&out, Exit::Internal);
            }
            let _ = done.send(());
        })?;

    let tunnel_thread = TunnelThread::new(
        Arc::new(config),
        prepared,
        tunnel_rx,
        main_rx,
        local_tx.clone(),
        shared,
        limits,
    );
    let out = outcome.clone();
    std::thread::Builder::new()
        .name("tunnel".into())
        .spawn(move || {
            let x = tunnel_thread.run();
            finish(&out, x);
            let _ = done_tx.send(());
        })?;

    let exit = loop {
        let sig = sys::wait_signal(&SIGNALS)?;
        match sig {
            SIGUSR1 => {
                let _ = main_tx.send(ToTunnel::Status);
                crate::sandbox::Probe::from_env().run();
            }
            SIGUSR2 => {
                if let Some(x) = *outcome.lock().unwrap_or_else(|p| p.into_inner()) {
                    break x;
                }
            }
            _ => {
                let name = match sig {
                    SIGTERM => "SIGTERM",
                    SIGINT => "SIGINT",
                    _ => "SIGHUP",
                };
                log::info!("{name} received: closing the tunnel and local connections");
                break Exit::Ok;
            }
        }
    };
    let _ = main_tx.send(ToTunnel::Shutdown);
    let _ = local_tx.send(ToLocal::Shutdown);
    let deadline = Instant::now() + STOP_TIMEOUT;
    let mut finished = 0;
    while finished < 2 {
        let left = deadline.saturating_duration_since(Instant::now());
        match done_rx.recv_timeout(left) {
            Ok(()) => finished += 1,
            Err(_) => break,
        }
    }
    Ok(exit)
}

/// Records a thread's outcome (the first one wins) and wakes the main thread.
fn finish(slot: &Mutex<Option<Exit>>, x: Exit) {
    let mut g = slot.lock().unwrap_or_else(|p| p.into_inner());
    if g.is_none() {
        *g = Some(x);
    }
    drop(g);
    sys::signal_self(SIGUSR2);
}

/// The cipher order this CPU gets, for the log and `--check`.
pub fn tls_cipher_order() -> &'static str {
    connect::describe_cipher_order()
}
