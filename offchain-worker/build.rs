//! Rebuilds the crate when a migration changes: `sqlx::migrate!` embeds
//! the migrations at compile time, and cargo does not watch them itself.

fn main() {
    println!("cargo:rerun-if-changed=../migrations");
}
