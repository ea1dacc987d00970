//! `rwsplit check` passes on every shipped config and fails, with the
//! expected message, on every broken config in tests/data/broken.

use std::path::Path;
use std::process::Command;

fn check(path: &Path) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_rwsplit"))
        .arg("check")
        .arg(path)
        .env("RWSPLIT_EXAMPLE_PASSWORD", "x")
        .env("RWSPLIT_MONITOR_PASSWORD", "x")
        .env("RWSPLIT_APP_PASSWORD", "x")
        .output()
        .expect("run rwsplit check");
    (out.status.success(), String::from_utf8_lossy(&out.stderr).into_owned())
}

fn toml_files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    files
}

#[test]
fn every_shipped_config_passes_check() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = toml_files(&root.join("conf"));
    files.extend(toml_files(&root.join("conf/examples")));
    assert!(files.len() >= 3);
    for f in files {
        let (ok, stderr) = check(&f);
        assert!(ok, "{}: {stderr}", f.display());
    }
}

#[test]
fn every_broken_config_fails_with_its_message() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/broken");
    let files = toml_files(&dir);
    assert!(files.len() >= 8);
    for f in files {
        let expected = std::fs::read_to_string(f.with_extension("expected")).unwrap();
        let (ok, stderr) = check(&f);
        assert!(!ok, "{} was accepted", f.display());
        assert!(
            stderr.contains(expected.trim()),
            "{}: expected {:?} in {stderr}",
            f.display(),
            expected.trim()
        );
        assert!(stderr.contains(&f.display().to_string()), "the message names the file: {stderr}");
    }
}

#[test]
fn help_and_version_exit_zero_and_bad_arguments_exit_two() {
    let run =
        |args: &[&str]| Command::new(env!("CARGO_BIN_EXE_rwsplit")).args(args).output().unwrap();
    assert!(run(&["--version"]).status.success());
    assert!(String::from_utf8_lossy(&run(&["--help"]).stdout).contains("rwsplit check FILE"));
    assert_eq!(run(&["--bogus"]).status.code(), Some(2));
}
