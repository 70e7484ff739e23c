//! The README's commands run as written: every ```sh block preceded by a
//! `<!-- runnable ... -->` comment is run with bash (`-euo pipefail`) in a fresh directory that
//! holds what a clone holds for it (`examples/data/`), with the built `sommelier` first on the
//! `PATH`, as `cargo install --path .` would put it.

use std::path::Path;
use std::process::Command;

use crate::support;

/// The blocks marked runnable, in order.
fn runnable_blocks(readme: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut lines = readme.lines();
    while let Some(line) = lines.next() {
        if !line.trim_start().starts_with("<!-- runnable") {
            continue;
        }
        let fence = lines.next().unwrap_or_default();
        assert_eq!(
            fence.trim(),
            "```sh",
            "a runnable marker must precede a ```sh block"
        );
        let block: Vec<&str> = lines.by_ref().take_while(|l| l.trim() != "```").collect();
        blocks.push(block.join("\n"));
    }
    blocks
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read dir") {
        let entry = entry.expect("entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("type").is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy");
        }
    }
}

#[test]
fn the_readmes_runnable_blocks_run_as_written_in_a_fresh_copy() {
    let root = support::repo_root();
    let readme = std::fs::read_to_string(root.join("README.md")).expect("README.md");
    let blocks = runnable_blocks(&readme);
    assert!(
        !blocks.is_empty(),
        "no block of the README is marked runnable"
    );
    let binary = support::binary();
    let bin_dir = binary.parent().expect("the binary's directory");
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    for (index, block) in blocks.iter().enumerate() {
        let dir = tempfile::tempdir().expect("tmp");
        copy_dir(
            &root.join("examples/data"),
            &dir.path().join("examples/data"),
        );
        let output = Command::new("bash")
            .args(["-euo", "pipefail", "-c", block])
            .current_dir(dir.path())
            .env("PATH", &path)
            .env_remove("SOMMELIER_STORE")
            .env_remove("SOMMELIER_TRAINING_DATA")
            .env_remove("MLFLOW_TRACKING_URI")
            .env_remove("SOMMELIER_PUSHGATEWAY_URL")
            .output()
            .expect("bash");
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success(),
            "README block {index} failed:\n{block}\n--- stdout\n{stdout}\n--- stderr\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        if block.contains("sommelier train") {
            assert!(stdout.contains("Unchanged"), "{stdout}");
            assert!(stdout.contains("Verified 2 versions"), "{stdout}");
        }
    }
}
