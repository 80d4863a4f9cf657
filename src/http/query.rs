//! The query strings of the findings and key endpoints, shared by the API
//! and the store-backed findings pages.

use axum::http::StatusCode;
use serde::Deserialize;

use super::error::{error, ApiError};
use crate::config::Entity;
use keywatch_core::engine::{Detector, Severity};

/// `?entity=principal` selects the principal baseline.
#[derive(Deserialize)]
pub struct KeyQuery {
    pub(super) entity: Option<Entity>,
}

/// Filters for `/api/v1/findings`.
#[derive(Deserialize)]
pub struct FindingsQuery {
    pub(super) since: Option<String>,
    pub(super) until: Option<String>,
    pub(super) detector: Option<Detector>,
    pub(super) severity: Option<Severity>,
    pub(super) key_id: Option<String>,
    pub(super) principal: Option<String>,
    pub(super) team: Option<String>,
    pub(super) status: Option<crate::store::Status>,
    pub(super) limit: Option<usize>,
    pub(super) cursor: Option<String>,
}

/// `name`=`t` as milliseconds (RFC 3339 or epoch), or 400.
pub fn time_param(name: &str, t: &Option<String>) -> Result<Option<i64>, ApiError> {
    t.as_ref()
        .map(|t| {
            keywatch_core::decode::time::parse_str(t).ok_or_else(|| {
                error(
                    StatusCode::BAD_REQUEST,
                    format!("{name}={t:?} is not a time (RFC 3339 or epoch)"),
                )
            })
        })
        .transpose()
}
