//! Writes the seed corpus (`troupe_fuzz::seeds`) to `fuzz/corpus/<target>/seed-<name>`,
//! the directory `cargo fuzz run <target>` reads and grows. Run from the repository root:
//! `cargo run --manifest-path fuzz/Cargo.toml --example seed` (stable is fine).

use std::path::PathBuf;

fn main() -> std::io::Result<()> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("corpus");
    let mut n = 0;
    for (target, name, bytes) in troupe_fuzz::seeds::all() {
        let dir = root.join(target);
        std::fs::create_dir_all(&dir)?;
        std::fs::write(dir.join(format!("seed-{name}")), bytes)?;
        n += 1;
    }
    println!("wrote {n} seeds under {}", root.display());
    Ok(())
}
