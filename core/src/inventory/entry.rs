//! One entry as written (any format) and its validation into a
//! [`KeyEntry`]: times, flags, lists, networks, action patterns and caps,
//! each refusal naming the field and its value.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use compact_str::CompactString;
use ipnet::IpNet;
use serde::Deserialize;

use super::{ActionPattern, KeyEntry, Privilege, UsageCap};
use crate::types::{Cidr, Secs};

/// One entry as written, before validation. CSV cells are borrowed from the
/// record; TOML and JSON values are owned.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawEntry<'a> {
    pub(super) key_id: Option<Cow<'a, str>>,
    pub(super) owner: Option<Cow<'a, str>>,
    pub(super) team: Option<Cow<'a, str>>,
    pub(super) system: Option<Cow<'a, str>>,
    pub(super) privilege: Option<Cow<'a, str>>,
    pub(super) created: Option<RawTime<'a>>,
    pub(super) expires: Option<RawTime<'a>>,
    pub(super) last_rotated: Option<RawTime<'a>>,
    pub(super) last_used: Option<RawTime<'a>>,
    #[serde(default)]
    pub(super) allowed_cidrs: RawList<'a>,
    #[serde(default)]
    pub(super) allowed_actions: RawList<'a>,
    pub(super) usage_cap: Option<Cow<'a, str>>,
    pub(super) one_time: Option<RawFlag<'a>>,
    pub(super) principal: Option<Cow<'a, str>>,
    pub(super) disabled: Option<RawFlag<'a>>,
}

/// The CSV columns, which are the entry fields.
pub(super) const FIELDS: [&str; 15] = [
    "key_id",
    "owner",
    "team",
    "system",
    "privilege",
    "created",
    "expires",
    "last_rotated",
    "last_used",
    "allowed_cidrs",
    "allowed_actions",
    "usage_cap",
    "one_time",
    "principal",
    "disabled",
];

impl<'a> RawEntry<'a> {
    /// Sets field number `i` of [`FIELDS`] from a CSV cell.
    pub(super) fn set(&mut self, i: usize, cell: &'a str) {
        let text = (!cell.is_empty()).then_some(Cow::Borrowed(cell));
        match i {
            0 => self.key_id = text,
            1 => self.owner = text,
            2 => self.team = text,
            3 => self.system = text,
            4 => self.privilege = text,
            5 => self.created = text.map(RawTime::Text),
            6 => self.expires = text.map(RawTime::Text),
            7 => self.last_rotated = text.map(RawTime::Text),
            8 => self.last_used = text.map(RawTime::Text),
            9 => self.allowed_cidrs = RawList::Joined(cell.into()),
            10 => self.allowed_actions = RawList::Joined(cell.into()),
            11 => self.usage_cap = text,
            12 => self.one_time = text.map(RawFlag::Text),
            13 => self.principal = text,
            _ => self.disabled = text.map(RawFlag::Text),
        }
    }
}

/// A time as written: text, epoch seconds, or a TOML datetime.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(super) enum RawTime<'a> {
    Text(Cow<'a, str>),
    Epoch(i64),
    Toml(toml::value::Datetime),
}

/// A yes/no as written: a boolean, or text in CSV.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(super) enum RawFlag<'a> {
    Bool(bool),
    Text(Cow<'a, str>),
}

/// A list as written: an array, or one string separated by `;` or `,`.
#[derive(Debug)]
pub(super) enum RawList<'a> {
    Items(Vec<String>),
    Joined(Cow<'a, str>),
}

impl Default for RawList<'_> {
    fn default() -> Self {
        RawList::Items(Vec::new())
    }
}

impl RawList<'_> {
    /// The items, trimmed, empty ones dropped.
    pub(super) fn items(&self) -> Vec<&str> {
        let all: Box<dyn Iterator<Item = &str>> = match self {
            RawList::Items(items) => Box::new(items.iter().map(String::as_str)),
            RawList::Joined(cell) => Box::new(cell.split([';', ','])),
        };
        all.map(str::trim).filter(|s| !s.is_empty()).collect()
    }

    /// The list as one text: the key under which its parsed form is shared.
    pub(super) fn text(&self) -> Cow<'_, str> {
        match self {
            RawList::Items(items) => Cow::Owned(items.join("\n")),
            RawList::Joined(cell) => Cow::Borrowed(cell),
        }
    }
}

impl<'de> Deserialize<'de> for RawList<'_> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Either {
            List(Vec<String>),
            One(String),
        }
        Ok(match Option::<Either>::deserialize(d)? {
            None => RawList::default(),
            Some(Either::List(items)) => RawList::Items(items),
            Some(Either::One(cell)) => RawList::Joined(Cow::Owned(cell)),
        })
    }
}

/// A field that failed validation.
pub(super) struct Bad {
    pub(super) field: &'static str,
    pub(super) value: String,
    pub(super) reason: String,
}

pub(super) fn bad(field: &'static str, value: impl Into<String>, reason: impl Into<String>) -> Bad {
    Bad {
        field,
        value: value.into(),
        reason: reason.into(),
    }
}

type Shared<T> = HashMap<Box<str>, T, foldhash::fast::RandomState>;

/// Shares what repeats across keys: a million keys have a few hundred owners,
/// a few dozen restriction lists, a few hundred distinct dates.
#[derive(Default)]
pub(super) struct Interner {
    pub(super) strings: HashSet<Arc<str>, foldhash::fast::RandomState>,
    pub(super) cidrs: Shared<Arc<[IpNet]>>,
    pub(super) actions: Shared<Arc<[ActionPattern]>>,
    pub(super) dates: Shared<Secs>,
}

impl Interner {
    pub(super) fn string(&mut self, s: &str) -> Arc<str> {
        if let Some(shared) = self.strings.get(s) {
            return shared.clone();
        }
        let shared: Arc<str> = Arc::from(s);
        self.strings.insert(shared.clone());
        shared
    }

    /// The shared parsed form of `list`, parsing it with `one` the first time.
    pub(super) fn list<T>(
        table: &mut Shared<Arc<[T]>>,
        field: &'static str,
        list: &RawList<'_>,
        one: impl Fn(&str) -> Result<T, String>,
    ) -> Result<Option<Arc<[T]>>, Bad> {
        let text = list.text();
        if let Some(shared) = table.get(&*text) {
            return Ok(Some(shared.clone()));
        }
        let items = list.items();
        if items.is_empty() {
            return Ok(None);
        }
        let parsed = items
            .into_iter()
            .map(|s| one(s).map_err(|r| bad(field, s, r)))
            .collect::<Result<Arc<[T]>, Bad>>()?;
        table.insert(text.into(), parsed.clone());
        Ok(Some(parsed))
    }

    /// A time field; date-only values (most of an inventory) are parsed once.
    pub(super) fn time(
        &mut self,
        field: &'static str,
        raw: &Option<RawTime<'_>>,
    ) -> Result<Option<Secs>, Bad> {
        if let Some(RawTime::Text(t)) = raw {
            let t = t.trim();
            if t.len() == 10 {
                if let Some(&secs) = self.dates.get(t) {
                    return Ok(Some(secs));
                }
                let secs = time(field, raw)?;
                if let Some(secs) = secs {
                    self.dates.insert(t.into(), secs);
                }
                return Ok(secs);
            }
        }
        time(field, raw)
    }
}

pub(super) fn build(raw: &RawEntry<'_>, interner: &mut Interner) -> Result<KeyEntry, Bad> {
    let key_id = raw.key_id.as_deref().map(str::trim).unwrap_or_default();
    if key_id.is_empty() {
        return Err(bad("key_id", key_id, "is required"));
    }
    if key_id.len() > crate::decode::DEFAULT_MAX_KEY_BYTES {
        return Err(bad(
            "key_id",
            format!("{}…", key_id.chars().take(32).collect::<String>()),
            format!(
                "longer than {} bytes, the longest key id events may carry",
                crate::decode::DEFAULT_MAX_KEY_BYTES
            ),
        ));
    }
    let mut text = |v: &Option<Cow<'_, str>>| {
        v.as_deref()
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| interner.string(s))
    };
    let owner = text(&raw.owner).ok_or_else(|| {
        bad(
            "owner",
            raw.owner.as_deref().unwrap_or_default(),
            "is required: every key needs someone to answer for it",
        )
    })?;
    let team = text(&raw.team);
    let system = text(&raw.system);
    let principal = text(&raw.principal);
    let privilege = match raw.privilege.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(p) => Some(p.parse::<Privilege>().map_err(|r| bad("privilege", p, r))?),
    };
    let created = interner.time("created", &raw.created)?;
    let expires = interner.time("expires", &raw.expires)?;
    let last_rotated = interner.time("last_rotated", &raw.last_rotated)?;
    let last_used = interner.time("last_used", &raw.last_used)?;
    for (field, t) in [("expires", expires), ("last_rotated", last_rotated)] {
        if let (Some(c), Some(t)) = (created, t) {
            if t < c {
                return Err(bad(
                    field,
                    format_time(t),
                    format!("is before `created` ({})", format_time(c)),
                ));
            }
        }
    }
    let allowed_cidrs = Interner::list(
        &mut interner.cidrs,
        "allowed_cidrs",
        &raw.allowed_cidrs,
        |c| c.parse::<Cidr>().map(|c| c.0),
    )?;
    let allowed_actions = Interner::list(
        &mut interner.actions,
        "allowed_actions",
        &raw.allowed_actions,
        ActionPattern::parse,
    )?;
    let usage_cap = match raw.usage_cap.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(c) => Some(c.parse::<UsageCap>().map_err(|r| bad("usage_cap", c, r))?),
    };
    let one_time = flag("one_time", &raw.one_time)?;
    let disabled = flag("disabled", &raw.disabled)?;
    Ok(KeyEntry {
        key_id: CompactString::from(key_id),
        owner,
        team,
        system,
        privilege,
        created,
        expires,
        last_rotated,
        last_used,
        allowed_cidrs,
        allowed_actions,
        usage_cap,
        one_time,
        principal,
        disabled,
    })
}

fn flag(field: &'static str, raw: &Option<RawFlag<'_>>) -> Result<bool, Bad> {
    match raw {
        None => Ok(false),
        Some(RawFlag::Bool(b)) => Ok(*b),
        Some(RawFlag::Text(t)) => match t.trim().to_ascii_lowercase().as_str() {
            "" | "false" | "no" | "0" => Ok(false),
            "true" | "yes" | "1" => Ok(true),
            _ => Err(bad(field, t.as_ref(), "must be true or false")),
        },
    }
}

pub(super) fn format_time(t: Secs) -> String {
    crate::decode::time::format_rfc3339(t as i64 * 1000)
}

pub(super) fn time(field: &'static str, raw: &Option<RawTime<'_>>) -> Result<Option<Secs>, Bad> {
    let hint = "write an RFC 3339 time (\"2025-06-01T10:00:00Z\"), a date (\"2025-06-01\") or epoch seconds, between 2000 and 2100";
    let ms = match raw {
        None => return Ok(None),
        Some(RawTime::Epoch(s)) => crate::decode::time::parse_epoch(*s as f64)
            .ok_or_else(|| bad(field, s.to_string(), hint))?,
        Some(RawTime::Toml(dt)) => {
            let s = dt.to_string();
            parse_time_text(&s).ok_or_else(|| bad(field, s, hint))?
        }
        Some(RawTime::Text(s)) => {
            let t = s.trim();
            if t.is_empty()
                || t.eq_ignore_ascii_case("n/a")
                || t.eq_ignore_ascii_case("no_information")
            {
                return Ok(None);
            }
            parse_time_text(t).ok_or_else(|| bad(field, s.as_ref(), hint))?
        }
    };
    Ok(Some((ms / 1000).clamp(0, u32::MAX as i64) as Secs))
}

/// RFC 3339, a bare date (midnight UTC), or epoch digits, in milliseconds.
pub(super) fn parse_time_text(s: &str) -> Option<i64> {
    if let Ok(date) = chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        let ms = date.and_hms_opt(0, 0, 0)?.and_utc().timestamp_millis();
        return crate::decode::time::parse_epoch(ms as f64);
    }
    crate::decode::time::parse_str(s)
}
