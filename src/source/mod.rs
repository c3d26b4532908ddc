//! Sources of desired users: each returns records plus rejections.

pub mod csv;
