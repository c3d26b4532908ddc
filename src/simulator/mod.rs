//! The bundled Concur simulator (axum): a sandbox that speaks the Concur wire formats.
