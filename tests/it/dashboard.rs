//! The dashboard page in headless Chromium, while events flow in over
//! Redis: charts with history and live samples, the insight feed reaching
//! `final`, a proof verified by the browser itself against the chain, and
//! a reconnection after the node restarts.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{bail, Context};
use integration_tests::{publish, redis_connection, workspace_root, Node, NodeOptions};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout, Command};

const CHROMIUM: &str = "/usr/bin/chromium";
const SCRIPT: &str = "tests/js/dashboard-check.mjs";
const NAB_SERIES: &str = "data/nab/realKnownCause/machine_temperature_system_failure.csv";
const HINT: &str = "run scripts/services.sh up";

/// Where the NAB slice starts: it holds anomalies once the analysis has
/// warmed up, among the live samples.
const SLICE_START: usize = 3200;
/// Samples stored before the page opens: it must fetch them as history.
const BEFORE: usize = 400;
/// Samples published while the page is open.
const LIVE: usize = 300;
/// Samples published after the node restarts.
const AFTER_RESTART: usize = 40;

/// NAB rows `skip..skip + count` as `machine_temperature` samples.
fn nab_samples(skip: usize, count: usize) -> Vec<Vec<u8>> {
    let path = workspace_root().join(NAB_SERIES);
    let text = std::fs::read_to_string(&path).expect("the NAB series ships in data/nab");
    let rows = text.lines().skip(1 + skip).take(count);
    rows.map(|line| {
        let (stamp, value) = line.split_once(',').expect("timestamp,value");
        let value: f64 = value.trim().parse().expect("a number");
        let message = json!({
            "name": "machine_temperature", "value": value, "tags": { "source": "nab" },
            "timestamp": format!("{}Z", stamp.trim().replace(' ', "T")),
        });
        message.to_string().into_bytes()
    })
    .collect()
}

fn business_events() -> Vec<Vec<u8>> {
    let kinds = [("purchase", 250.0), ("signup", 0.0), ("support_ticket", 5.0)];
    (0..12)
        .map(|i| {
            let (kind, value) = kinds[i % kinds.len()];
            let message = json!({
                "type": kind, "user_id": format!("user-{i}"), "value": value,
                "source": "web", "timestamp": 1_700_000_100_000_i64 + 60_000 * i as i64,
            });
            message.to_string().into_bytes()
        })
        .collect()
}

/// Fails with the way out when the browser, Node.js or the npm packages
/// are missing.
fn check_prerequisites() -> anyhow::Result<()> {
    if !Path::new(CHROMIUM).exists() {
        bail!("{CHROMIUM} is missing (Debian's chromium package); {HINT}");
    }
    let package = "contracts/node_modules/playwright-core/package.json";
    if !workspace_root().join(package).exists() {
        bail!("playwright-core is missing from contracts/node_modules; {HINT}");
    }
    let node = std::process::Command::new("node").arg("--version").output();
    node.map_err(|e| anyhow::anyhow!("cannot run node (Node.js): {e}; {HINT}"))?;
    Ok(())
}

fn artifact_dir() -> PathBuf {
    let target = std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| workspace_root().join("target"));
    target.join("it-artifacts")
}

/// The page, its config and the JSON-RPC route, as plain HTTP.
async fn check_routes(node: &Node) -> anyhow::Result<()> {
    let http = reqwest::Client::builder().no_proxy().build()?;
    let page = http.get(format!("{}/", node.http_url)).send().await?;
    assert_eq!(page.status(), 200);
    assert_eq!(page.headers()["content-type"], "text/html; charset=utf-8");
    let policy = page.headers()["content-security-policy"].to_str()?.to_owned();
    assert!(policy.contains(&node.anvil.url), "{policy}");
    assert!(page.text().await?.contains("/assets/app.js"));

    let config: Value =
        http.get(format!("{}/config.json", node.http_url)).send().await?.json().await?;
    assert_eq!(config["rpcUrl"], node.rpc_url.as_str(), "{config}");
    assert_eq!(config["chainRpcUrl"], node.anvil.url.as_str(), "{config}");
    assert_eq!(config["chainId"], 31337, "{config}");

    let batch = json!([
        { "jsonrpc": "2.0", "id": 1, "method": "analytics_systemHealth", "params": [] },
        { "jsonrpc": "2.0", "id": 2, "method": "analytics_getInsight", "params": [999] },
    ]);
    let rpc =
        format!("{}{}", node.http_url, config["rpcPath"].as_str().unwrap_or("/rpc"));
    let answers: Value = http.post(rpc).json(&batch).send().await?.json().await?;
    let answers = answers.as_array().context("a batch answer")?;
    let by_id = |id: i64| answers.iter().find(|a| a["id"] == id).cloned();
    assert!(by_id(1).is_some_and(|a| a["result"]["status"].is_string()), "{answers:?}");
    assert!(by_id(2).is_some_and(|a| a["error"]["code"] == -32001), "{answers:?}");
    Ok(())
}

/// The browser script and its line protocol.
struct Script {
    child: Child,
    lines: Lines<BufReader<ChildStdout>>,
    log: PathBuf,
    /// The script's temporary files (the browser profile among them),
    /// removed even when the script is killed.
    _scratch: tempfile::TempDir,
}

impl Script {
    fn start(node: &Node, points: usize) -> anyhow::Result<Self> {
        let dir = workspace_root().join("target/it-logs");
        std::fs::create_dir_all(&dir)?;
        let log = dir.join(format!("{}.log", integration_tests::unique("dashboard")));
        let scratch = tempfile::tempdir()?;
        let mut child = Command::new("node")
            .arg(workspace_root().join(SCRIPT))
            .arg(&node.http_url)
            .arg(artifact_dir())
            .args([points.to_string(), AFTER_RESTART.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log)?)
            .env("TMPDIR", scratch.path())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("cannot run node (Node.js); {HINT}"))?;
        let stdout = child.stdout.take().context("piped stdout")?;
        let lines = BufReader::new(stdout).lines();
        Ok(Self { child, lines, log, _scratch: scratch })
    }

    /// The next line, which must start with `word`.
    async fn expect(&mut self, word: &str, wait: Duration) -> anyhow::Result<String> {
        let line = tokio::time::timeout(wait, self.lines.next_line()).await;
        let line = match line {
            Ok(Ok(Some(line))) => line,
            Ok(_) => bail!("the script ended before `{word}`: {}", self.stderr()),
            Err(_) => {
                bail!("no `{word}` from the script within {wait:?}: {}", self.stderr())
            }
        };
        if !line.starts_with(word) {
            bail!("expected `{word}`, the script said {line:?}: {}", self.stderr());
        }
        Ok(line)
    }

    async fn say(&mut self, line: &str) -> anyhow::Result<()> {
        let stdin = self.child.stdin.as_mut().context("piped stdin")?;
        stdin.write_all(format!("{line}\n").as_bytes()).await?;
        Ok(stdin.flush().await?)
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

#[tokio::test]
async fn the_dashboard_charts_anchors_and_verifies_in_a_browser() -> anyhow::Result<()> {
    check_prerequisites()?;
    // The slice's anomalies after warm-up are alarms of `combo`; the
    // default detector mutes that stretch after an earlier alarm.
    let options = NodeOptions {
        config_toml: Some("[analysis]\ndetector = \"combo\"\n".into()),
        ..NodeOptions::default()
    };
    let mut node = Node::launch(options).await?;
    check_routes(&node).await?;
    let mut redis = redis_connection(&node.redis_url).await?;

    // History the page must fetch for itself.
    let metrics = node.channels.metrics.clone();
    publish(&mut redis, &metrics, nab_samples(SLICE_START, BEFORE)).await?;
    node.wait_for("the first samples stored", Duration::from_secs(60), || async {
        let events = node.health().await?["totals"]["events"].as_u64();
        Ok((events == Some(BEFORE as u64)).then_some(()))
    })
    .await?;

    let mut script = Script::start(&node, BEFORE + LIVE)?;
    script.expect("ready", Duration::from_secs(60)).await?;
    publish(&mut redis, &metrics, nab_samples(SLICE_START + BEFORE, LIVE)).await?;
    publish(&mut redis, &node.channels.business, business_events()).await?;

    script.expect("restart", Duration::from_secs(240)).await?;
    node.restart().await?;
    script.say("restarted").await?;
    let next = SLICE_START + BEFORE + LIVE;
    publish(&mut redis, &metrics, nab_samples(next, AFTER_RESTART)).await?;

    let done = script.expect("done", Duration::from_secs(300)).await?;
    let status = tokio::time::timeout(Duration::from_secs(30), script.child.wait()).await;
    let status = status.context("the script did not exit")??;
    assert!(status.success(), "the script failed: {}", script.stderr());
    let summary: Value = serde_json::from_str(done.trim_start_matches("done").trim())?;
    assert!(summary["anomalies"].as_u64() > Some(0), "{summary}");
    assert!(artifact_dir().join("dashboard.png").exists());
    Ok(())
}
