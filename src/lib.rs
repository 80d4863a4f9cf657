//! keywatch
pub mod decode;
