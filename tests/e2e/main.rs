//! Reel end to end, one binary (each test file linking RocksDB on its own
//! cost half a GiB of disk and a link step apiece): real `reeld` and `reel`
//! processes, real Garage S3 servers started as plain processes, real
//! files, processes killed for real. The long-haul runs are apart, each
//! alone in its binary so that no other test shares the machine with them
//! while they measure: `tests/torture.rs` (kill -9 at random moments) and
//! `tests/soak.rs` (steady load, growth checked).

mod access;
mod archive;
mod asciinema;
mod at_rest;
mod bad_input;
mod bastion;
mod browser;
mod evidence;
mod failover;
mod keys;
mod load;
mod mirror;
mod purge;
mod reading;
mod recombination;
mod record;
mod roundtrip;
mod tls;
mod verify;
mod web;

/// Two Garage servers and a `reeld` storing on them, with small segments
/// (4 KiB) and no background recombination, all under `dir`.
pub(crate) struct TwoStores {
    pub primary: reel_testkit::Garage,
    pub secondary: reel_testkit::Garage,
    /// reeld's configuration file (for `reel` commands run beside it).
    pub cfg: std::path::PathBuf,
    pub reeld: reel_testkit::Reeld,
}

pub(crate) fn two_stores_small_segments(dir: &std::path::Path) -> TwoStores {
    use reel_testkit::{Garage, Reeld, garage_config_file};
    let primary = Garage::start(&dir.join("garage-primary")).unwrap();
    let secondary = Garage::start(&dir.join("garage-secondary")).unwrap();
    let cfg = garage_config_file(dir, &primary, &secondary, "[compactor]\nenabled = false\n");
    let reeld = Reeld::start(
        &dir.join("data"),
        &[
            "--config",
            cfg.to_str().unwrap(),
            "--segment-target-bytes",
            "4096",
        ],
    )
    .unwrap();
    TwoStores {
        primary,
        secondary,
        cfg,
        reeld,
    }
}

/// Loses the catalog of `reeld` (stopped first) and rebuilds it from the
/// stores with `reel rebuild-catalog --json`; returns its report. `reeld`
/// is left stopped.
pub(crate) fn lose_and_rebuild_catalog(
    reeld: &mut reel_testkit::Reeld,
    cfg: &std::path::Path,
) -> serde_json::Value {
    reeld.stop();
    std::fs::remove_dir_all(reeld.data_dir.join("catalog")).unwrap();
    let out = std::process::Command::new(reel_testkit::bin("reel"))
        .args(["rebuild-catalog", "--json", "--data-dir"])
        .arg(&reeld.data_dir)
        .arg("--config")
        .arg(cfg)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}
