//! The HR CSV reader.
