//! `keywatch gen`: realistic traffic to stdout or a file.
