//! Simulator behaviour over real HTTP.
