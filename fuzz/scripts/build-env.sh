# Sourced by run-all.sh and long-runs.sh: where the fuzz builds go, and RocksDB's C++
# linked from the test build's archive when one exists (no second C++ build). cargo-fuzz
# passes -Z flags only with a sanitizer or build-std; RUSTC_BOOTSTRAP lets a stable
# toolchain take the few nightly-only options libFuzzer builds still use.
: "${CARGO_TARGET_DIR:=/var/tmp/ordo-target}"
export CARGO_TARGET_DIR
fuzz_target_dir="$CARGO_TARGET_DIR/fuzz"
for rocksdb_out in "$CARGO_TARGET_DIR"/debug/build/librocksdb-sys-*/out; do
    if [[ -f "$rocksdb_out/librocksdb.a" ]]; then
        export ROCKSDB_LIB_DIR="$rocksdb_out" ROCKSDB_STATIC=1
        break
    fi
done
export RUSTC_BOOTSTRAP=1
