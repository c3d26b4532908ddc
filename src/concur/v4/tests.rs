//! Tests across the v4 wire modules.
