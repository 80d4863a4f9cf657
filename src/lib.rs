//! keywatch
pub mod cli;
pub mod cmd;
pub mod config;
pub mod decode;
pub mod engine;
pub mod gen;
pub mod replay;
pub mod telemetry;
