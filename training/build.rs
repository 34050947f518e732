//! With the `blas` feature, ndarray's matrix products call CBLAS: link the system's OpenBLAS.
fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    if std::env::var_os("CARGO_FEATURE_BLAS").is_some() {
        println!("cargo:rustc-link-lib=openblas");
    }
}
