//! One integration-test binary; each module covers one feature at the boundary.

mod simulator;
