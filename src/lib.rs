//! keywatch
pub mod config;
pub mod decode;
pub mod engine;
