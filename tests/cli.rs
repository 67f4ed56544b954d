//! The `localproxy` binary's user interface, run as a user would: every bad input gives
//! one clear line plus the `--help` hint and exit code 2; `--check` prints the effective
//! configuration with tokens masked; `--help`, `-V` and the settings export work.
//!
//! Each run starts from an empty environment (plus what the test sets) in its own temp
//! directory, so neither the developer's shell nor a `./config` directory leaks in. No
//! network: nothing here gets past configuration.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const TOKEN: &str = "AQGAAXhSECRETaccessTOKENtext0123456789abcdefghijklmnopqrstuvwxyz";
const CLIENT: &str = "3f1c6b3a-SECRET-4f0e-9a3b-7c2d1e0f9a8b";

/// A fresh working directory per test.
fn workdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("lp-cli-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn run_in(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_localproxy"));
    c.args(args).env_clear().current_dir(dir);
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Asserts the usage-error shape and returns the first line.
fn usage_error(o: &Output) -> String {
    let err = text(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "stderr: {err}");
    assert!(o.stdout.is_empty(), "stdout: {}", text(&o.stdout));
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 2, "{err}");
    assert!(lines[0].starts_with("localproxy: "), "{err}");
    assert_eq!(lines[1], "Try 'localproxy --help' for a list of options.");
    assert!(!err.contains("SECRET"), "a token leaked: {err}");
    lines[0].to_string()
}

/// Runs a bad case with and without `--check`; both must print the same line.
fn bad(name: &str, args: &[&str], env: &[(&str, &str)], want: &str) {
    let dir = workdir(name);
    let line = usage_error(&run_in(&dir, args, env));
    assert!(line.contains(want), "{name}: {line}");
    // In front, so a trailing option still misses its value.
    let mut checked = vec!["--check"];
    checked.extend_from_slice(args);
    assert_eq!(usage_error(&run_in(&dir, &checked, env)), line, "{name}");
    let _ = std::fs::remove_dir_all(&dir);
}

const WITH_TOKEN: &[(&str, &str)] = &[("AWSIOT_TUNNEL_ACCESS_TOKEN", TOKEN)];

#[test]
fn missing_token() {
    bad(
        "no-token",
        &["-r", "us-east-1", "-s", "5555"],
        &[],
        "localproxy: --access-token: no access token is given; set AWSIOT_TUNNEL_ACCESS_TOKEN",
    );
}

#[test]
fn no_arguments_at_all_print_the_usage_summary() {
    let dir = workdir("no-args");
    // Even with a token in the environment: a run needs -s or -d.
    for env in [&[][..], WITH_TOKEN] {
        let o = run_in(&dir, &[], env);
        let err = text(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{err}");
        assert!(o.stdout.is_empty());
        let help = localproxy::cli::usage_summary();
        assert!(err.starts_with(&help), "{err}");
        assert!(
            err.ends_with("Try 'localproxy --help' for a list of options.\n"),
            "{err}"
        );
        assert!(!err.contains("no access token"), "{err}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn port_zero() {
    bad(
        "port-zero",
        &["-r", "us-east-1", "-s", "0"],
        WITH_TOKEN,
        "localproxy: --source-listen-port: port 0 is out of range; give a port from 1 to 65535",
    );
}

#[test]
fn source_and_destination() {
    bad(
        "s-and-d",
        &["-r", "us-east-1", "-s", "5555", "-d", "22"],
        WITH_TOKEN,
        "--source-listen-port and --destination-app: both are given",
    );
}

#[test]
fn endpoint_with_scheme() {
    bad(
        "scheme",
        &["-e", "wss://x/", "-s", "5555"],
        WITH_TOKEN,
        "--proxy-endpoint: 'wss://x/' has a scheme or a path; give host[:port] without wss:// or a path",
    );
}

#[test]
fn short_client_token() {
    bad(
        "short-client",
        &["-r", "us-east-1", "-s", "5555", "-i", "short"],
        WITH_TOKEN,
        "--client-token: is 5 characters long; give 32 to 128 characters",
    );
}

#[test]
fn unknown_option() {
    bad(
        "unknown",
        &["-r", "us-east-1", "-s", "5555", "--frobnicate"],
        WITH_TOKEN,
        "localproxy: --frobnicate: unknown option",
    );
    bad(
        "unknown-short",
        &["-Z"],
        WITH_TOKEN,
        "localproxy: -Z: unknown option",
    );
}

#[test]
fn missing_value() {
    bad(
        "missing-value",
        &["-r", "us-east-1", "-s", "5555", "--verbose"],
        WITH_TOKEN,
        "localproxy: --verbose: the value is missing; write --verbose LEVEL",
    );
}

#[test]
fn config_file_with_unknown_key() {
    let dir = workdir("cfg-unknown");
    let cfg = dir.join("lp.conf");
    std::fs::write(
        &cfg,
        "# test\nregion = us-east-1\nsource-listen-prot = 5555\n",
    )
    .unwrap();
    let cfg = cfg.display().to_string();
    bad(
        "cfg-unknown-run",
        &["--config", &cfg],
        WITH_TOKEN,
        &format!("localproxy: {cfg} line 3: unknown key 'source-listen-prot'"),
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn malformed_settings_json() {
    let dir = workdir("bad-json");
    let json = dir.join("s.json");
    std::fs::write(&json, "{\"tunneling\": {\"proxy\": {\n").unwrap();
    let json = json.display().to_string();
    bad(
        "bad-json-run",
        &["-r", "us-east-1", "-s", "5555", "--settings-json", &json],
        WITH_TOKEN,
        &format!("localproxy: --settings-json {json}: line "),
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn check_prints_the_configuration_with_tokens_masked() {
    let dir = workdir("check-ok");
    let env = [
        ("AWSIOT_TUNNEL_ACCESS_TOKEN", TOKEN),
        ("AWSIOT_TUNNEL_CLIENT_TOKEN", CLIENT),
        ("AWSIOT_TUNNEL_REGION", "eu-central-1"),
    ];
    let o = run_in(&dir, &["-s", "SSH=5555,WEB=8080", "--check"], &env);
    let out = text(&o.stdout);
    let err = text(&o.stderr);
    assert_eq!(o.status.code(), Some(0), "{err}");
    assert!(!out.contains(TOKEN) && !err.contains(TOKEN));
    assert!(!out.contains(CLIENT) && !err.contains(CLIENT));
    assert!(!out.contains("SECRET") && !err.contains("SECRET"));
    assert!(out.contains("mode = source\n"), "{out}");
    assert!(
        out.contains(&format!("access-token = *** ({} chars)\n", TOKEN.len())),
        "{out}"
    );
    assert!(
        out.contains(&format!("client-token = *** ({} chars)\n", CLIENT.len())),
        "{out}"
    );
    assert!(out.contains("proxy-endpoint = data.tunneling.iot.eu-central-1.amazonaws.com:443\n"));
    assert!(
        out.contains("source-listen-port = SSH=5555,WEB=8080\n"),
        "{out}"
    );
    assert!(err.is_empty(), "{err}");

    // -t works too, with a warning through the logger that still shows no token.
    let o = run_in(
        &dir,
        &[
            "-t",
            TOKEN,
            "-r",
            "us-east-1",
            "-d",
            "22",
            "--check",
            "-v",
            "6",
        ],
        &[("LOCALPROXY_LOG_TIMESTAMPS", "0")],
    );
    let out = text(&o.stdout);
    let err = text(&o.stderr);
    assert_eq!(o.status.code(), Some(0), "{err}");
    assert!(
        !out.contains("SECRET") && !err.contains("SECRET"),
        "{out}{err}"
    );
    assert!(out.contains("destination-app = 127.0.0.1:22\n"), "{out}");
    assert!(
        err.starts_with("WARN the access token given with -t is visible"),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn log_lines_have_a_utc_timestamp_by_default() {
    let dir = workdir("log-ts");
    let o = run_in(
        &dir,
        &["-t", TOKEN, "-r", "us-east-1", "-s", "1", "--check"],
        &[],
    );
    let err = text(&o.stderr);
    // 2026-11-24T10:54:05.123Z WARN ...
    let first = err.lines().next().unwrap_or_default();
    let (ts, rest) = first.split_once(' ').unwrap_or_default();
    assert_eq!(ts.len(), 24, "{first}");
    assert!(ts.ends_with('Z') && ts.as_bytes()[10] == b'T', "{first}");
    assert!(rest.starts_with("WARN "), "{first}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn without_check_a_valid_configuration_reaches_the_engine() {
    // The engine runs and gives up (exit 4) on an endpoint where nothing listens: a
    // loopback port that was free a moment ago, with no retries allowed.
    let dir = workdir("run");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let settings = dir.join("s.json");
    std::fs::write(
        &settings,
        r#"{"tunneling":{"proxy":{"websocket":{"connect_retry_count":"0"}}}}"#,
    )
    .unwrap();
    let endpoint = format!("127.0.0.1:{port}");
    let o = run_in(
        &dir,
        &[
            "-e",
            &endpoint,
            "-s",
            "5555",
            "--settings-json",
            settings.to_str().unwrap(),
        ],
        WITH_TOKEN,
    );
    let err = text(&o.stderr);
    assert!(o.stdout.is_empty());
    assert_eq!(o.status.code(), Some(4), "{err}");
    assert!(err.contains("giving up after 1 attempt"), "{err}");
    assert!(!err.contains(TOKEN), "the token leaked: {err}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn help_lists_every_option() {
    let dir = workdir("help");
    let o = run_in(&dir, &["--help"], &[]);
    assert_eq!(o.status.code(), Some(0));
    let out = text(&o.stdout);
    for opt in [
        "-h, --help",
        "-V, --version",
        "-t, --access-token",
        "-i, --client-token",
        "-e, --proxy-endpoint",
        "-r, --region",
        "-s, --source-listen-port",
        "-d, --destination-app",
        "-b, --local-bind-address",
        "-c, --capath",
        "-k, --no-ssl-host-verify",
        "-v, --verbose",
        "-m, --mode",
        "-y, --destination-client-type",
        "--config FILE",
        "--config-dir",
        "--settings-json",
        "--export-default-settings",
        "--check",
        "AWSIOT_TUNNEL_ACCESS_TOKEN",
        "AWSIOT_TUNNEL_CLIENT_TOKEN",
        "AWSIOT_TUNNEL_ENDPOINT",
        "AWSIOT_TUNNEL_REGION",
        "Exit codes",
        "README",
        "SIGTERM, SIGINT, SIGHUP",
        "SIGINT and SIGHUP ignored at start (nohup, cmd &)",
        "SIGUSR1",
    ] {
        assert!(out.contains(opt), "missing {opt}");
    }
    assert!(o.stderr.is_empty());
    assert_eq!(text(&run_in(&dir, &["-h"], &[]).stdout), out);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn version() {
    let dir = workdir("version");
    for flag in ["-V", "--version"] {
        let o = run_in(&dir, &[flag], &[]);
        assert_eq!(o.status.code(), Some(0));
        assert_eq!(
            text(&o.stdout),
            format!("localproxy {}\n", env!("CARGO_PKG_VERSION"))
        );
        assert!(o.stderr.is_empty());
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn exported_settings_are_accepted_back() {
    let dir = workdir("export");
    let json = dir.join("defaults.json");
    let json_s = json.display().to_string();
    // Answered first: no token, no region needed.
    let o = run_in(&dir, &["--export-default-settings", &json_s], &[]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    assert!(o.stdout.is_empty() && o.stderr.is_empty());
    let written = std::fs::read_to_string(&json).unwrap();
    assert!(
        written.contains("\"max_payload_size\": \"64512\""),
        "{written}"
    );

    let o = run_in(
        &dir,
        &[
            "-r",
            "us-east-1",
            "-s",
            "5555",
            "--settings-json",
            &json_s,
            "--check",
        ],
        WITH_TOKEN,
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    assert!(o.stderr.is_empty(), "{}", text(&o.stderr));
    assert!(text(&o.stdout).contains("tunneling.proxy.message.max_payload_size = 64512\n"));

    let o = run_in(
        &dir,
        &["--export-default-settings", "/nonexistent-dir/x.json"],
        &[],
    );
    usage_error(&o);
    let _ = std::fs::remove_dir_all(&dir);
}

// What the run checks before it connects, `--check` checks too: each case below is
// refused by both with the same line (`bad` runs it with and without `--check`), and
// the run refuses it before any connection (nothing here reaches the network).

#[test]
fn socks_proxy_is_refused_before_connecting() {
    let mut env = WITH_TOKEN.to_vec();
    env.push(("https_proxy", "socks5://127.0.0.1:1080"));
    bad(
        "socks",
        &["-r", "us-east-1", "-d", "22"],
        &env,
        "localproxy: https_proxy: only http:// and https:// proxies are supported; fix or unset the proxy variable",
    );
}

#[test]
fn proxy_without_a_scheme_is_refused_before_connecting() {
    let mut env = WITH_TOKEN.to_vec();
    env.push(("HTTPS_PROXY", "127.0.0.1:3128"));
    bad(
        "no-scheme",
        &["-r", "us-east-1", "-d", "22"],
        &env,
        "localproxy: HTTPS_PROXY: the proxy URL has no scheme; write http://host:port",
    );
}

#[test]
fn unknown_user_is_refused_before_connecting() {
    bad(
        "nosuchuser",
        &["-r", "us-east-1", "-d", "22", "--user", "nosuchuser"],
        WITH_TOKEN,
        "localproxy: --user: ",
    );
}

#[test]
fn capath_without_certificates_is_refused_before_connecting() {
    let dir = workdir("empty-capath");
    std::fs::write(dir.join("README"), "no certificates here\n").unwrap();
    let capath = dir.display().to_string();
    bad(
        "empty-capath-run",
        &["-r", "us-east-1", "-d", "22", "-c", &capath],
        WITH_TOKEN,
        &format!(
            "localproxy: --capath: no PEM certificate found in {capath}; put the CA certificates there"
        ),
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_bind_address_that_is_not_an_address_is_refused() {
    bad(
        "bad-ipv4",
        &["-r", "us-east-1", "-s", "5555", "-b", "999.1.1.1"],
        WITH_TOKEN,
        "localproxy: --local-bind-address: '999.1.1.1' is not an IPv4 address",
    );
    bad(
        "bad-ipv6",
        &["-r", "us-east-1", "-s", "5555", "-b", "1::2::3"],
        WITH_TOKEN,
        "localproxy: --local-bind-address: '1::2::3' is not an IPv6 address",
    );
}

/// `--check` on a valid set-up: (stdout, stderr).
fn check_ok(name: &str, args: &[&str], env: &[(&str, &str)]) -> (String, String) {
    let dir = workdir(name);
    let mut a = args.to_vec();
    a.push("--check");
    let mut e = WITH_TOKEN.to_vec();
    e.push(("LOCALPROXY_LOG_TIMESTAMPS", "0"));
    e.extend_from_slice(env);
    let o = run_in(&dir, &a, &e);
    let (out, err) = (text(&o.stdout), text(&o.stderr));
    assert_eq!(o.status.code(), Some(0), "{name}: {out}{err}");
    let _ = std::fs::remove_dir_all(&dir);
    (out, err)
}

#[test]
fn check_prints_the_web_proxy_and_a_verdict_last() {
    let (out, err) = check_ok(
        "verdict",
        &["-r", "us-east-1", "-d", "22"],
        &[("https_proxy", "http://user:SECRETpw@127.0.0.1:3128")],
    );
    assert!(
        out.contains("\nweb-proxy = http://***@127.0.0.1:3128\n"),
        "{out}"
    );
    assert!(!out.contains("SECRETpw"), "{out}");
    let last = out.lines().last().unwrap();
    assert_eq!(
        last,
        "check: valid; would connect to data.tunneling.iot.us-east-1.amazonaws.com:443 as destination"
    );
    assert!(err.is_empty(), "{err}");

    let (out, _) = check_ok(
        "verdict-no-proxy",
        &["-r", "us-east-1", "-d", "22"],
        &[
            ("https_proxy", "http://127.0.0.1:3128"),
            ("no_proxy", "amazonaws.com"),
        ],
    );
    assert!(out.contains("\nweb-proxy = (none)\n"), "{out}");
}

#[test]
fn a_missing_ssl_cert_file_is_a_warning_that_check_counts() {
    // The run warns and uses the other stores (tests/trust.rs): --check says the same.
    let (out, err) = check_ok(
        "cert-file",
        &["-r", "us-east-1", "-d", "22"],
        &[("SSL_CERT_FILE", "/nonexistent/ca.pem")],
    );
    assert!(
        err.starts_with("WARN SSL_CERT_FILE=/nonexistent/ca.pem holds no usable CA certificate"),
        "{err}"
    );
    assert!(
        out.lines()
            .last()
            .unwrap()
            .starts_with("check: valid, 1 warning on stderr; "),
        "{out}"
    );
}

#[test]
fn a_port_in_use_is_a_warning_not_an_error() {
    let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = held.local_addr().unwrap().port().to_string();
    let (out, err) = check_ok(
        "in-use",
        &["-r", "us-east-1", "-s", &port, "-b", "127.0.0.1"],
        &[],
    );
    assert!(
        err.contains(&format!(
            "WARN 127.0.0.1:{port} is in use now; the run retries it"
        )),
        "{err}"
    );
    assert!(out.contains("check: valid, 1 warning on stderr"), "{out}");
}

#[test]
fn a_stray_word_is_named_unless_it_could_be_a_token() {
    bad(
        "stray-help",
        &["help"],
        &[],
        "localproxy: 'help': is not an option nor an option's value; options start with -",
    );
    bad(
        "stray-long",
        &[
            "-r",
            "us-east-1",
            "-d",
            "22",
            "AQGAAXhSECRETlostITSoptionLETTER",
        ],
        WITH_TOKEN,
        "localproxy: a word of 32 characters (not shown): is not an option",
    );
    bad(
        "stray-mixed-case",
        &["-r", "us-east-1", "-d", "22", "Passw0rd"],
        WITH_TOKEN,
        "localproxy: a word of 8 characters (not shown): is not an option",
    );
}

#[test]
fn a_service_id_given_twice_is_an_error() {
    bad(
        "dup-id",
        &["-r", "us-east-1", "-d", "SSH=22,SSH=23"],
        WITH_TOKEN,
        "localproxy: --destination-app: service id SSH is given twice; give each service id once",
    );
    bad(
        "dup-id-s",
        &["-r", "us-east-1", "-s", "SSH=5555,SSH=5556"],
        WITH_TOKEN,
        "localproxy: --source-listen-port: service id SSH is given twice",
    );
}

#[test]
fn an_ipv6_target_is_shown_in_brackets() {
    let dir = workdir("v6-target");
    let o = run_in(
        &dir,
        &["-r", "us-east-1", "-d", "SSH=[::1]:22", "--check"],
        WITH_TOKEN,
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    assert!(
        text(&o.stdout).contains("destination-app = SSH=[::1]:22\n"),
        "{}",
        text(&o.stdout)
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn default_settings_go_to_stdout_with_a_dash() {
    let dir = workdir("export-stdout");
    let o = run_in(&dir, &["--export-default-settings", "-"], &[]);
    assert_eq!(o.status.code(), Some(0));
    assert!(
        text(&o.stdout).contains("\"tunneling\""),
        "{}",
        text(&o.stdout)
    );
    assert!(!dir.join("-").exists(), "wrote a file named -");
    let _ = std::fs::remove_dir_all(&dir);
}
