//! The `depot` binary's start-up behaviour: bad settings stop it with one line naming the key.

use std::process::Command;

fn depot(env: &[(&str, &str)], args: &[&str]) -> std::process::Output {
    depot_in(&tempfile::tempdir().unwrap(), env, args)
}

/// Runs `depot` in `dir` (where its default SQLite file lives).
fn depot_in(dir: &tempfile::TempDir, env: &[(&str, &str)], args: &[&str]) -> std::process::Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_depot"));
    cmd.current_dir(dir.path()).args(args);
    for var in ["DATABASE_URL", "AMQP_URL", "PORT", "DEPOT_ENV", "RUST_LOG"] {
        cmd.env_remove(var);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

/// Waits until `/health/live` answers 200 (the server runs and handles signals).
fn wait_live(port: u16) -> bool {
    use std::io::{Read, Write};
    (0..200).any(|_| {
        std::thread::sleep(std::time::Duration::from_millis(50));
        let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
            return false;
        };
        let _ = s.set_read_timeout(Some(std::time::Duration::from_secs(2)));
        if s.write_all(b"GET /health/live HTTP/1.0\r\n\r\n").is_err() {
            return false;
        }
        let mut buf = String::new();
        let _ = s.read_to_string(&mut buf);
        buf.starts_with("HTTP/1.0 200") || buf.starts_with("HTTP/1.1 200")
    })
}

fn assert_config_error(env: &[(&str, &str)], key: &str) {
    let out = depot(env, &["config", "check"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
    assert!(stderr.contains(key), "names {key}: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn bad_settings_stop_with_one_line_naming_the_key() {
    assert_config_error(&[("DEPOT__SERVER__PORT", "99999")], "server.port");
    assert_config_error(&[("PORT", "http")], "server.port");
    assert_config_error(&[("DEPOT__QUEUE__KIND", "kafka")], "queue.kind");
    assert_config_error(&[("DATABASE_URL", "mysql://x")], "database.url");
    assert_config_error(&[("DEPOT__QUEUE__KIND", "rabbitmq")], "queue.amqp_url");
}

#[test]
fn config_check_and_show() {
    let out = depot(&[], &["config", "check"]);
    assert!(out.status.success());
    let out = depot(
        &[("AMQP_URL", "amqp://guest:topsecret@127.0.0.1:5672/%2f")],
        &["config", "show"],
    );
    assert!(out.status.success());
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(shown.contains("port = 8000"), "{shown}");
    assert!(shown.contains("amqp://guest:***@"), "{shown}");
    assert!(!shown.contains("topsecret"), "{shown}");
}

#[test]
fn an_unwritable_database_path_stops_the_service_with_the_key() {
    let out = depot(
        &[
            ("DATABASE_URL", "sqlite:///proc/depot/depot.db"),
            ("DEPOT__SERVER__PORT", "0"),
        ],
        &["serve"],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("database.url"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn migrate_status_runs_from_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let status = |dir: &tempfile::TempDir| {
        let out = depot_in(dir, &[], &["migrate", "status"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    let before = status(&dir);
    assert!(before.len() >= 3, "{before:?}");
    assert!(
        before.iter().all(|l| l.starts_with("pending m2026")),
        "{before:?}"
    );

    let out = depot_in(&dir, &[], &["migrate", "up"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(status(&dir).iter().all(|l| l.starts_with("applied ")));

    // `down` rolls back only the newest migration.
    let out = depot_in(&dir, &[], &["migrate", "down"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let after = status(&dir);
    let (last, earlier) = after.split_last().unwrap();
    assert!(last.starts_with("pending "), "{after:?}");
    assert!(
        earlier.iter().all(|l| l.starts_with("applied ")),
        "{after:?}"
    );
}

#[test]
fn sigterm_stops_the_server_gracefully() {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_depot"))
        .current_dir(dir.path())
        .env("DEPOT__SERVER__HOST", "127.0.0.1")
        .env("DEPOT__SERVER__PORT", port.to_string())
        .env("DEPOT__SERVER__SHUTDOWN_GRACE_SECONDS", "2")
        .env_remove("DATABASE_URL")
        .env_remove("AMQP_URL")
        .env_remove("PORT")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    assert!(wait_live(port), "the server did not start");
    let healthcheck = || {
        depot_in(&dir, &[("PORT", &port.to_string())], &["healthcheck"])
            .status
            .success()
    };
    assert!(healthcheck(), "`depot healthcheck` sees the running server");
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let exit = loop {
        if let Some(exit) = child.try_wait().unwrap() {
            break exit;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "still running 10 s after SIGTERM"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    assert!(exit.success(), "{exit:?}");
    assert!(!healthcheck(), "`depot healthcheck` fails once it is gone");
}

#[test]
fn password_command_uses_the_original_variables() {
    let out = depot(
        &[
            ("DEFAULT_PASSWORD_LENGTH", "20"),
            ("PASSWORD_SPECIAL_SYMBOLS", "0"),
        ],
        &["password", "-n", "3"],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 3);
    for p in lines {
        assert_eq!(p.len(), 20);
        assert!(p.chars().all(|c| c.is_ascii_alphanumeric()), "{p}");
    }
    let out = depot(
        &[],
        &[
            "password",
            "--mode",
            "passphrase",
            "--words",
            "4",
            "--entropy",
        ],
    );
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("entropy: 51.70 bits"));
    let out = depot(&[], &["password", "--password-length", "3"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--password-length"));
}

#[test]
fn invalid_password_defaults_stop_the_service_at_start_up() {
    assert_config_error(
        &[("DEFAULT_PASSWORD_LENGTH", "3")],
        "password.default_length",
    );
    assert_config_error(
        &[
            ("PASSWORD_NUMBERS", "0"),
            ("PASSWORD_LOWER_CASE_CHARS", "0"),
            ("PASSWORD_UPPER_CASE_CHARS", "0"),
            ("PASSWORD_SPECIAL_SYMBOLS", "0"),
        ],
        "password",
    );
}

/// Nothing generated is logged, even at the most verbose level.
#[test]
fn generated_passwords_never_reach_the_logs() {
    use std::io::{Read, Write};
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let log_path = dir.path().join("depot.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_depot"))
        .current_dir(dir.path())
        .env("DEPOT__SERVER__HOST", "127.0.0.1")
        .env("DEPOT__SERVER__PORT", port.to_string())
        .env("DEPOT__LOG__FORMAT", "json")
        .env("RUST_LOG", "trace")
        .env_remove("DATABASE_URL")
        .env_remove("AMQP_URL")
        .env_remove("PORT")
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    assert!(wait_live(port), "the server did not start");
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .write_all(b"GET /api/v1/passwords?password_length=32&count=3 HTTP/1.0\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let body = response.split("\r\n\r\n").nth(1).unwrap();
    let json: serde_json::Value = serde_json::from_str(body).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(200));
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    child.wait().unwrap();
    let logs = std::fs::read_to_string(&log_path).unwrap();
    assert!(
        logs.contains("/api/v1/passwords"),
        "the request was logged at all"
    );
    for p in json["passwords"].as_array().unwrap() {
        assert!(
            !logs.contains(p.as_str().unwrap()),
            "a password is in the logs"
        );
    }
}
