//! Embeds the built-in rule pack (`queries/*.sql`) and its fixtures
//! (`queries/fixtures/*.toml`) into the binary, so `aiwatch` works from any
//! folder and a new rule file is picked up by the next build without a code change.
//!
//! Also records what `--version` and `aiwatch_build_info` report: the git
//! commit (`AIWATCH_COMMIT` when set, else `git rev-parse`, else `unknown`, so a
//! build from a tarball or without git still works) and the compiler version.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

fn embed(dir: &Path, ext: &str, name: &str, out: &mut String) {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == ext))
        .collect();
    files.sort();
    writeln!(out, "pub(crate) const {name}: &[(&str, &str)] = &[").unwrap();
    for p in files {
        let rel = p.strip_prefix(manifest_dir()).expect("embedded files are inside the crate").display().to_string();
        // The path is joined when the crate compiles, not here: this script's
        // output is reused when the same target directory builds another clone.
        writeln!(out, "    ({rel:?}, include_str!(concat!(env!(\"CARGO_MANIFEST_DIR\"), \"/\", {rel:?}))),").unwrap();
    }
    writeln!(out, "];").unwrap();
}

/// The crate's folder, read when the script runs: `env!` here would bake in the
/// folder the script was compiled in.
fn manifest_dir() -> PathBuf {
    PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"))
}

/// Runs a command in the crate folder; its first output line, or `None` when it fails or is not there.
fn first_line(cmd: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(cmd).args(args).current_dir(manifest_dir()).output().ok()?;
    let text = String::from_utf8(out.stdout).ok()?;
    let line = text.lines().next()?.trim().to_string();
    (out.status.success() && !line.is_empty()).then_some(line)
}

/// The commit of the checkout, rebuilt when HEAD moves. Only files that exist
/// are watched: cargo reruns a script on every build for a missing one.
fn commit() -> String {
    println!("cargo:rerun-if-env-changed=AIWATCH_COMMIT");
    if let Some(c) = std::env::var("AIWATCH_COMMIT").ok().filter(|c| !c.trim().is_empty()) {
        return c.trim().to_string();
    }
    let Some(commit) = first_line("git", &["rev-parse", "--short=12", "HEAD"]) else {
        return "unknown".into();
    };
    let mut watched = vec![first_line("git", &["rev-parse", "--git-path", "HEAD"])];
    if let Some(branch) = first_line("git", &["symbolic-ref", "-q", "HEAD"]) {
        watched.push(first_line("git", &["rev-parse", "--git-path", &branch]));
    }
    watched.push(first_line("git", &["rev-parse", "--git-path", "packed-refs"]));
    for path in watched.into_iter().flatten() {
        let path = manifest_dir().join(path);
        if path.exists() {
            println!("cargo:rerun-if-changed={}", path.display());
        }
    }
    commit
}

fn main() {
    let root = manifest_dir();
    let mut out = String::new();
    embed(&root.join("queries"), "sql", "BUILTIN_RULES", &mut out);
    embed(&root.join("queries/fixtures"), "toml", "BUILTIN_FIXTURES", &mut out);
    let dest = Path::new(&std::env::var("OUT_DIR").unwrap()).join("builtin_rules.rs");
    std::fs::write(dest, out).unwrap();
    println!("cargo:rerun-if-changed=queries");
    println!("cargo:rerun-if-changed=queries/fixtures");

    println!("cargo:rustc-env=AIWATCH_COMMIT={}", commit());
    // Cargo hands build scripts the compiler it builds with.
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let version = Command::new(&rustc).arg("--version").output().ok().and_then(|o| String::from_utf8(o.stdout).ok());
    let version = version.as_deref().map(str::trim).filter(|v| !v.is_empty()).unwrap_or("rustc unknown");
    println!("cargo:rustc-env=AIWATCH_RUSTC={}", version.strip_prefix("rustc ").unwrap_or(version));
}
