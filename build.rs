//! Embeds the built-in rule pack (`queries/*.sql`) and its fixtures
//! (`queries/fixtures/*.toml`) into the binary, so `aiwatch` works from any
//! folder and a new rule file is picked up by the next build without a code change.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

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

fn main() {
    let root = manifest_dir();
    let mut out = String::new();
    embed(&root.join("queries"), "sql", "BUILTIN_RULES", &mut out);
    embed(&root.join("queries/fixtures"), "toml", "BUILTIN_FIXTURES", &mut out);
    let dest = Path::new(&std::env::var("OUT_DIR").unwrap()).join("builtin_rules.rs");
    std::fs::write(dest, out).unwrap();
    println!("cargo:rerun-if-changed=queries");
    println!("cargo:rerun-if-changed=queries/fixtures");
}
