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

/// The fields serde accepts in the table that `probe` (TOML with a
/// `__probe` key in that table) reaches, read from the unknown-field
/// error that `deny_unknown_fields` gives: the structs themselves say
/// which keys exist.
fn struct_fields(probe: &str) -> Vec<String> {
    let err = rwsplit::Config::parse(probe).expect_err("the probe key is unknown");
    let expected = err.split_once("expected").map_or("", |(_, rest)| rest);
    let fields: Vec<String> = expected.split('`').skip(1).step_by(2).map(String::from).collect();
    assert!(!fields.is_empty(), "no field list in: {err}");
    fields
}

/// Keys shown in `text` (set or commented out) per table, tables named
/// by their header (`[admin]`, `[[users]]`, also commented out), the top
/// level as "".
fn documented_keys(text: &str) -> std::collections::BTreeMap<String, Vec<String>> {
    let mut keys = std::collections::BTreeMap::<String, Vec<String>>::new();
    let mut table = String::new();
    for line in text.lines() {
        let line = line.trim_start_matches('#').trim();
        if let Some(header) = line.strip_prefix('[') {
            table = header.trim_matches(|c| c == '[' || c == ']').to_string();
            continue;
        }
        let Some((key, _)) = line.split_once('=') else { continue };
        let key = key.trim();
        if !key.is_empty() && key.chars().all(|c| c.is_ascii_lowercase() || c == '_') {
            keys.entry(table.clone()).or_default().push(key.to_string());
        }
    }
    keys
}

#[test]
fn shipped_config_documents_every_key_the_structs_accept() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(root.join("conf/rwsplit.toml")).unwrap();
    let documented = documented_keys(&text);
    let tables: Vec<(&str, String)> = vec![
        ("", "__probe = 1\n".to_string()),
        ("listeners", "[[listeners]]\n__probe = 1\n".into()),
        ("admin", "[admin]\n__probe = 1\n".into()),
        ("users", "[[users]]\n__probe = 1\n".into()),
        ("backends", "[[backends]]\n__probe = 1\n".into()),
        ("monitor", "[monitor]\n__probe = 1\n".into()),
        ("routing", "[routing]\n__probe = 1\n".into()),
        ("consistency", "[consistency]\n__probe = 1\n".into()),
        ("rules", "[[rules]]\n__probe = 1\n".into()),
        ("timeouts", "[timeouts]\n__probe = 1\n".into()),
        ("limits", "[limits]\n__probe = 1\n".into()),
        ("log", "[log]\n__probe = 1\n".into()),
        ("backend_tls", "[backend_tls]\n__probe = 1\n".into()),
        ("pool", "[pool]\n__probe = 1\n".into()),
        ("reload", "[reload]\n__probe = 1\n".into()),
    ];
    let mut problems = Vec::new();
    for (table, probe) in &tables {
        let fields = struct_fields(probe);
        let shown = documented.get(*table).cloned().unwrap_or_default();
        for f in &fields {
            // Top-level keys that are tables are documented by their header.
            let is_table = table.is_empty() && tables.iter().any(|(t, _)| t == f);
            if !is_table && !shown.contains(f) {
                problems.push(format!("[{table}] {f} is not in conf/rwsplit.toml"));
            }
        }
        for k in &shown {
            if !fields.contains(k) {
                problems.push(format!("[{table}] {k} is documented but not a key"));
            }
        }
    }
    for table in documented.keys() {
        if !tables.iter().any(|(t, _)| t == table) {
            problems.push(format!("[{table}] is documented but not checked here"));
        }
    }
    assert!(problems.is_empty(), "{problems:#?}");
}

#[test]
fn the_reload_fingerprint_follows_the_contents_of_the_files_named() {
    let dir = std::env::temp_dir().join(format!("rwsplit-watch-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("rwsplit.toml");
    let text = "[[listeners]]\naddress = \"127.0.0.1:1\"\n[[users]]\nname = \"a\"\n\
                password_file = \"a.pw\"\n[[backends]]\nname = \"p\"\n\
                address = \"127.0.0.1:2\"\nrole = \"primary\"\n";
    std::fs::write(&path, text).unwrap();
    std::fs::write(dir.join("a.pw"), "one").unwrap();
    let config = rwsplit::Config::load(&path).unwrap();
    let fingerprint = || rwsplit::server::fingerprint(&config);
    let first = fingerprint();
    assert_eq!(fingerprint(), first, "nothing changed");
    std::fs::write(dir.join("a.pw"), "two").unwrap();
    let second = fingerprint();
    assert_ne!(second, first, "the password file changed");
    std::fs::write(&path, format!("{text}\n")).unwrap();
    let third = fingerprint();
    assert_ne!(third, second, "the config file changed");
    std::fs::remove_file(dir.join("a.pw")).unwrap();
    assert_ne!(fingerprint(), third, "the password file is gone");
    assert_eq!(fingerprint(), fingerprint(), "a missing file counts by its error");
    std::fs::remove_dir_all(&dir).unwrap();
}
