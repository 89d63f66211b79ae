//! Command-line behaviour that needs no services: configuration errors
//! stop start-up with a message naming the field.

use std::process::Command;

use integration_tests::node_binary;

fn run_with(config: &str, extra_env: &[(&str, &str)]) -> (bool, String) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("node.toml");
    std::fs::write(&path, config).expect("write config");
    let mut command = Command::new(node_binary());
    command.arg("run").arg("--config").arg(&path);
    for (key, value) in extra_env {
        command.env(key, value);
    }
    let output = command.output().expect("run analytics-node");
    let text = String::from_utf8_lossy(&output.stderr).into_owned();
    (output.status.success(), text)
}

#[test]
fn bad_configuration_names_the_field() {
    let cases = [
        ("[server]\nrpc_port = \"nine\"\n", "server.rpc_port"),
        ("[redis]\nurl = \"http://127.0.0.1:6379\"\n", "redis.url"),
        ("[chain]\nconfirmations = 0\n", "chain.confirmations"),
        ("[analysis]\nwindow = 0\n", "analysis.window"),
        ("[pipeline]\nbatch_sise = 10\n", "pipeline"),
    ];
    for (config, field) in cases {
        let (ok, stderr) = run_with(config, &[]);
        assert!(!ok, "started with {config:?}");
        assert!(stderr.contains(field), "{config:?}: {stderr}");
    }
}

#[test]
fn flags_and_environment_override_the_file() {
    let config = "[database]\nurl = \"postgresql://h/db\"\n";
    let (ok, stderr) = run_with(config, &[("ANALYTICS_DATABASE_URL", "mysql://h/db")]);
    assert!(!ok);
    assert!(stderr.contains("database.url"), "{stderr}");
    assert!(stderr.contains("mysql"), "environment did not override the file: {stderr}");
}
