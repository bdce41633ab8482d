//! Configuration layers, validation and defaults.

use super::*;

#[test]
fn durations_take_a_unit_and_say_how_to_write_one() {
    assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
    assert_eq!(parse_duration("5s").unwrap(), Duration::from_secs(5));
    assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
    assert_eq!(parse_duration("1h").unwrap(), Duration::from_secs(3600));
    assert!(parse_duration("5")
        .unwrap_err()
        .to_string()
        .contains("unit"));
    assert!(parse_duration("fast")
        .unwrap_err()
        .to_string()
        .contains("500ms"));
}

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// The configuration with one environment variable set.
fn load_env(var: &str, value: &str) -> anyhow::Result<Config> {
    Config::load(None, env(&[(var, value)]), &Overrides::default())
}

#[test]
fn layers_apply_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("troupe.toml");
    std::fs::write(
        &file,
        "[node]\nid = \"from-file\"\n[storage]\nmemtable_bytes = 1000\ndurability = \"relaxed\"\n[net]\nlisten = \"127.0.0.1:1\"\n",
    )
    .unwrap();
    let cfg = Config::load(
        Some(&file),
        env(&[
            ("TROUPE__STORAGE__MEMTABLE_BYTES", "1048576"),
            ("TROUPE__NET__LISTEN", "127.0.0.1:2"),
            ("TROUPE__NET__SEEDS", "127.0.0.1:7401,127.0.0.1:7411"),
            ("UNRELATED", "x"),
        ]),
        &Overrides {
            listen: Some("127.0.0.1:3".into()),
            ..Overrides::default()
        },
    )
    .unwrap();
    assert_eq!(cfg.node.id, "from-file");
    assert_eq!(cfg.storage.memtable_bytes, 1048576);
    assert_eq!(cfg.storage.durability, DurabilityMode::Relaxed);
    assert_eq!(cfg.net.listen, "127.0.0.1:3");
    assert_eq!(cfg.net.seeds, vec!["127.0.0.1:7401", "127.0.0.1:7411"]);
    assert_eq!(cfg.net.admin_listen, "127.0.0.1:7402");
}

#[test]
fn typos_and_bad_values_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("troupe.toml");
    std::fs::write(&file, "[storage]\nmemtable_byte = 1\n").unwrap();
    assert!(Config::load(Some(&file), env(&[]), &Overrides::default()).is_err());
    std::fs::write(&file, "[storage]\ndurability = \"sometimes\"\n").unwrap();
    assert!(Config::load(Some(&file), env(&[]), &Overrides::default()).is_err());
    let err = load_env("TROUPE__CLUSTER__R", "9").unwrap_err().to_string();
    assert!(
        err.contains("cluster.r from env TROUPE__CLUSTER__R"),
        "names where the value came from: {err}"
    );
}

#[test]
fn late_tolerance_is_a_duration_of_at_least_20ms_or_zero() {
    let load = |v: &str| load_env("TROUPE__MEMBERSHIP__LATE_TOLERANCE", v);
    assert!(load("100ms").is_ok());
    assert!(load("0ms").is_ok());
    let err = format!("{:#}", load("5ms").unwrap_err());
    assert!(err.contains("below 20ms"), "{err}");
    assert!(load("soon").is_err());
}

#[test]
fn net_workers_is_auto_or_a_number_of_threads() {
    let load = |v: &str| load_env("TROUPE__NET__WORKERS", v);
    assert_eq!(load("0").unwrap().net.workers().unwrap(), 0);
    assert_eq!(load("3").unwrap().net.workers().unwrap(), 3);
    let auto = load("auto").unwrap().net;
    let on = |cores| auto.workers_on(cores).unwrap();
    assert_eq!((on(1), on(2)), (0, 0), "the main loop on 1-2 cores");
    assert_eq!(
        (on(3), on(8), on(64)),
        (3, 8, 16),
        "else one per core, at most 16"
    );
    assert_eq!(
        load("5").unwrap().net.workers_on(1).unwrap(),
        5,
        "a number is taken as is"
    );
    for bad in ["some", "-1", "1000"] {
        let err = format!("{:#}", load(bad).unwrap_err());
        assert!(err.contains("net.workers") && err.contains("auto"), "{err}");
    }
}

#[test]
fn a_bad_environment_value_names_the_variable_and_the_valid_values() {
    let err = load_env("TROUPE__STORAGE__DURABILITY", "sometimes")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("TROUPE__STORAGE__DURABILITY")
            && err.contains("`sync`")
            && err.contains("`relaxed`"),
        "{err}"
    );
    let err = load_env("TROUPE__STORAGE__MEMTABLE_BYTES", "lots")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("TROUPE__STORAGE__MEMTABLE_BYTES") && err.contains("whole number"),
        "{err}"
    );
    let err = load_env("TROUPE__STORAGE__MEMTABLE_BYTE", "1")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("TROUPE__STORAGE__MEMTABLE_BYTE") && err.contains("memtable_bytes"),
        "{err}"
    );
}

/// Either limit of a memtable may be the lower one (it is sealed at whichever it reaches
/// first); a log limit too small to hold a record is refused, naming the key.
#[test]
fn memtable_wal_bytes_is_read_and_checked() {
    let ok = Config::load(
        None,
        env(&[
            ("TROUPE__STORAGE__MEMTABLE_BYTES", "1048576"),
            ("TROUPE__STORAGE__MEMTABLE_WAL_BYTES", "32768"),
        ]),
        &Overrides::default(),
    )
    .unwrap();
    assert_eq!(ok.storage.memtable_wal_bytes, 32768);
    assert_eq!(Config::default().storage.memtable_wal_bytes, 256 << 20);
    let err = load_env("TROUPE__STORAGE__MEMTABLE_WAL_BYTES", "100")
        .unwrap_err()
        .to_string();
    assert!(err.contains("memtable_wal_bytes >= 4096"), "{err}");
}

#[test]
fn every_value_records_the_layer_that_set_it() {
    use crate::config_layers::{Layered, Source};
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("troupe.toml");
    std::fs::write(
        &file,
        "[net]\nlisten = \"127.0.0.1:1\"\nadmin_listen = \"127.0.0.1:5\"\n",
    )
    .unwrap();
    let l = Layered::load(
        Some(&file),
        env(&[("TROUPE__NET__LISTEN", "127.0.0.1:2")]),
        &Overrides {
            admin_listen: Some("127.0.0.1:6".into()),
            ..Overrides::default()
        },
    )
    .unwrap();
    let src = |k: &str| l.entries[k].1.clone();
    assert_eq!(src("net.listen"), Source::Env("TROUPE__NET__LISTEN".into()));
    assert_eq!(src("net.admin_listen"), Source::Flag("--admin-listen"));
    assert_eq!(src("storage.durability"), Source::Default);
    std::fs::write(&file, "[net]\nlisten = \"127.0.0.1:1\"\n").unwrap();
    let l = Layered::load(Some(&file), env(&[]), &Overrides::default()).unwrap();
    assert_eq!(l.entries["net.listen"].1, Source::File(file.clone()));
    assert_eq!(l.config().unwrap().net.listen, "127.0.0.1:1");
}
#[test]
fn tls_is_off_by_default_and_a_certificate_needs_its_key_and_the_ca() {
    let load = |pairs: &[(&str, &str)]| Config::load(None, env(pairs), &Overrides::default());
    assert!(!load(&[]).unwrap().tls.enabled());
    let err = load(&[("TROUPE__TLS__CERT", "n.crt")])
        .unwrap_err()
        .to_string();
    assert!(err.contains("tls.key and tls.ca"), "{err}");
    let err = load(&[("TROUPE__TLS__REQUIRE_CLIENT_CERT", "true")])
        .unwrap_err()
        .to_string();
    assert!(err.contains("needs TLS on"), "{err}");
    let cfg = load(&[
        ("TROUPE__TLS__CERT", "n.crt"),
        ("TROUPE__TLS__KEY", "n.key"),
        ("TROUPE__TLS__CA", "ca.pem"),
        ("TROUPE__TLS__HANDSHAKE_TIMEOUT", "250ms"),
    ])
    .unwrap();
    assert!(cfg.tls.enabled());
    assert_eq!(
        parse_duration(&cfg.tls.handshake_timeout).unwrap(),
        Duration::from_millis(250)
    );
}
