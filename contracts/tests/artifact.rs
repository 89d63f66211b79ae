//! The committed artifact must be what the pinned compiler produces from the
//! committed source. Needs `node` and `npm --prefix contracts ci`.

use std::path::Path;
use std::process::Command;

#[test]
fn committed_artifact_matches_a_fresh_build() {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("build.mjs");
    let output = Command::new("node")
        .arg(&script)
        .arg("--check")
        .output()
        .unwrap_or_else(|err| panic!("cannot run node ({err}); install Node.js 20+"));

    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{} --check failed:\n{stderr}", script.display());
}
