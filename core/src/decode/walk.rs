//! A streaming walk over one JSON message that picks out only the values a
//! profile maps, borrowing strings from the input and skipping everything else
//! with `IgnoredAny` — no `serde_json::Value` is built.
//!
//! A profile is compiled into a [`Trie`] of object keys (and array indices);
//! the walk descends only into subtrees that lead to a mapped pointer.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};

use super::profile::{pointer_tokens, Field, ProfileSpec};

/// What a trie node records when the walk reaches it.
#[derive(Debug, Clone, Copy)]
enum Capture {
    /// The value fills `field`; lower `priority` wins when several pointers match.
    Field { field: Field, priority: u8 },
    /// An `only_if` condition: the value must equal one of the filter's strings.
    Filter(u8),
    /// A `skip_if` condition: a value equal to one of its strings skips the record.
    Skip(u8),
}

#[derive(Debug, Default)]
struct Node {
    /// Each child's key, its [`KeyId`] and its node.
    children: Vec<(Box<str>, KeyId, u32)>,
    /// Open addressing over `children` by [`KeyId::slot`] (`u32::MAX`:
    /// empty); a power of two, at least twice as many slots as children.
    slots: Box<[u32]>,
    captures: Vec<Capture>,
}

impl Node {
    fn add_child(&mut self, key: &str, node: u32) {
        self.children
            .push((key.into(), KeyId::of(key.as_bytes()), node));
        let size = (self.children.len() * 2).next_power_of_two().max(4);
        let mut slots = vec![u32::MAX; size].into_boxed_slice();
        for (i, (_, id, _)) in self.children.iter().enumerate() {
            let mut slot = id.slot(size - 1);
            while slots[slot] != u32::MAX {
                slot = (slot + 1) & (size - 1);
            }
            slots[slot] = i as u32;
        }
        self.slots = slots;
    }
}

/// An object key's length and first and last eight bytes: a hash for the
/// table of a node's children, and, up to 16 bytes, the key itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct KeyId {
    len: usize,
    head: u64,
    tail: u64,
}

impl KeyId {
    fn of(key: &[u8]) -> KeyId {
        let len = key.len();
        let (head, tail) = match (key.first_chunk::<8>(), key.last_chunk::<8>()) {
            (Some(h), Some(t)) => (u64::from_le_bytes(*h), u64::from_le_bytes(*t)),
            _ => {
                let mut short = [0u8; 8];
                short[..len].copy_from_slice(key);
                let v = u64::from_le_bytes(short);
                (v, v)
            }
        };
        KeyId { len, head, tail }
    }

    fn slot(&self, mask: usize) -> usize {
        let h = (self.head ^ self.tail.rotate_left(29) ^ self.len as u64)
            .wrapping_mul(0x9E37_79B9_7F4A_7C15);
        (h >> 40) as usize & mask
    }
}

/// A compiled profile.
#[derive(Debug)]
pub struct Trie {
    nodes: Vec<Node>,
    /// Each `only_if` condition's strings.
    filters: Vec<Box<[Box<str>]>>,
    /// Each `skip_if` condition's strings.
    skips: Vec<Box<[Box<str>]>>,
}

/// A pointer in a profile that is not a JSON pointer.
#[derive(Debug, thiserror::Error)]
#[error("field `{field}`: `{pointer}` is not a JSON pointer (it must start with `/`)")]
pub struct BadPointer {
    /// Field or `only_if` the pointer was given for.
    pub field: String,
    /// The pointer as written.
    pub pointer: String,
}

impl Trie {
    /// Compiles a resolved profile.
    pub fn compile(spec: &ProfileSpec) -> Result<Trie, BadPointer> {
        let mut trie = Trie {
            nodes: vec![Node::default()],
            filters: Vec::new(),
            skips: Vec::new(),
        };
        for field in Field::ALL {
            for (priority, pointer) in spec.pointers(field).iter().enumerate() {
                let node = trie.insert(field.name(), pointer)?;
                trie.nodes[node].captures.push(Capture::Field {
                    field,
                    priority: priority.min(u8::MAX as usize) as u8,
                });
            }
        }
        let strings = |v: &super::profile::OneOf| -> Box<[Box<str>]> {
            v.values().iter().map(|s| s.as_str().into()).collect()
        };
        for (pointer, value) in spec.only_if.iter().flatten() {
            let node = trie.insert("only_if", pointer)?;
            let idx = trie.filters.len() as u8;
            trie.filters.push(strings(value));
            trie.nodes[node].captures.push(Capture::Filter(idx));
        }
        for (pointer, value) in spec.skip_if.iter().flatten() {
            let node = trie.insert("skip_if", pointer)?;
            let idx = trie.skips.len() as u8;
            trie.skips.push(strings(value));
            trie.nodes[node].captures.push(Capture::Skip(idx));
        }
        Ok(trie)
    }

    fn insert(&mut self, field: &str, pointer: &str) -> Result<usize, BadPointer> {
        let tokens = pointer_tokens(pointer)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| BadPointer {
                field: field.to_owned(),
                pointer: pointer.to_owned(),
            })?;
        let mut node = 0usize;
        for token in tokens {
            let existing = self.child(node as u32, token.as_bytes());
            node = match existing {
                Some(idx) => idx as usize,
                None => {
                    let idx = self.nodes.len();
                    self.nodes.push(Node::default());
                    self.nodes[node].add_child(&token, idx as u32);
                    idx
                }
            };
        }
        Ok(node)
    }

    /// Number of `only_if` conditions a record must meet.
    pub fn filter_count(&self) -> usize {
        self.filters.len()
    }

    /// The child of `node` at object key (or array index) `key`: called for
    /// every key of every record, so one probe of a hash table, and a key
    /// of up to 16 bytes is compared as three integers.
    fn child(&self, node: u32, key: &[u8]) -> Option<u32> {
        let node = &self.nodes[node as usize];
        if node.children.is_empty() {
            return None;
        }
        let id = KeyId::of(key);
        let mask = node.slots.len() - 1;
        let mut slot = id.slot(mask);
        loop {
            let (name, child_id, child) = node.children.get(node.slots[slot] as usize)?;
            if *child_id == id && (id.len <= 16 || name.as_bytes() == key) {
                return Some(*child);
            }
            slot = (slot + 1) & mask;
        }
    }
}

/// A scalar picked out of the message.
#[derive(Debug, Clone, PartialEq)]
pub enum Scalar<'de> {
    /// A string, borrowed unless it held escapes.
    Str(Cow<'de, str>),
    /// A non-negative integer.
    U64(u64),
    /// A negative integer.
    I64(i64),
    /// A float.
    F64(f64),
    /// A boolean.
    Bool(bool),
}

/// The values one record holds for a profile's fields.
#[derive(Debug, Default)]
pub struct Record<'de> {
    fields: [Option<(u8, Scalar<'de>)>; Field::ALL.len()],
    filters_met: u32,
    /// A `skip_if` condition held.
    skipped: bool,
    /// A mapped field held an object or array instead of a scalar.
    pub wrong_type: Option<Field>,
}

impl<'de> Record<'de> {
    /// Takes the value found for `field`.
    pub fn take(&mut self, field: Field) -> Option<Scalar<'de>> {
        self.fields[field as usize].take().map(|(_, v)| v)
    }

    /// Whether every `only_if` condition held and no `skip_if` one did.
    pub fn passes_filters(&self, trie: &Trie) -> bool {
        !self.skipped && self.filters_met.count_ones() as usize == trie.filter_count()
    }

    fn capture(&mut self, trie: &Trie, node: u32, value: Scalar<'de>) {
        for cap in &trie.nodes[node as usize].captures {
            match *cap {
                Capture::Field { field, priority } => {
                    // An empty string is no value: the next pointer may hold one
                    // (Azure writes `""` for a credential a sign-in did not use).
                    if matches!(&value, Scalar::Str(s) if s.is_empty()) {
                        continue;
                    }
                    let slot = &mut self.fields[field as usize];
                    if slot.as_ref().is_none_or(|(p, _)| priority < *p) {
                        *slot = Some((priority, value.clone()));
                    }
                }
                Capture::Filter(idx) => {
                    if let Scalar::Str(s) = &value {
                        if trie.filters[idx as usize].iter().any(|f| **f == **s) {
                            self.filters_met |= 1 << idx;
                        }
                    }
                }
                Capture::Skip(idx) => {
                    if let Scalar::Str(s) = &value {
                        if trie.skips[idx as usize].iter().any(|f| **f == **s) {
                            self.skipped = true;
                        }
                    }
                }
            }
        }
    }

    fn mark_wrong_type(&mut self, trie: &Trie, node: u32) {
        for cap in &trie.nodes[node as usize].captures {
            if let Capture::Field { field, .. } = *cap {
                self.wrong_type.get_or_insert(field);
            }
        }
    }
}

/// Walks one value at `node`, filling `rec`.
struct NodeSeed<'t, 'r, 'de> {
    trie: &'t Trie,
    node: u32,
    rec: &'r mut Record<'de>,
}

impl<'de> DeserializeSeed<'de> for NodeSeed<'_, '_, 'de> {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for NodeSeed<'_, '_, 'de> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<(), E> {
        self.rec
            .capture(self.trie, self.node, Scalar::Str(Cow::Borrowed(v)));
        Ok(())
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<(), E> {
        self.rec
            .capture(self.trie, self.node, Scalar::Str(Cow::Owned(v.to_owned())));
        Ok(())
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<(), E> {
        self.rec
            .capture(self.trie, self.node, Scalar::Str(Cow::Owned(v)));
        Ok(())
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<(), E> {
        self.rec.capture(self.trie, self.node, Scalar::U64(v));
        Ok(())
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<(), E> {
        self.rec.capture(self.trie, self.node, Scalar::I64(v));
        Ok(())
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<(), E> {
        self.rec.capture(self.trie, self.node, Scalar::F64(v));
        Ok(())
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<(), E> {
        self.rec.capture(self.trie, self.node, Scalar::Bool(v));
        Ok(())
    }

    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_none<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        self.rec.mark_wrong_type(self.trie, self.node);
        while let Some(child) = map.next_key_seed(KeySeed {
            trie: self.trie,
            node: self.node,
        })? {
            match child {
                Some(node) => map.next_value_seed(NodeSeed {
                    trie: self.trie,
                    node,
                    rec: &mut *self.rec,
                })?,
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        self.rec.mark_wrong_type(self.trie, self.node);
        let mut index = 0usize;
        let mut buf = itoa_buf();
        loop {
            let child = self
                .trie
                .child(self.node, fmt_index(&mut buf, index).as_bytes());
            let more = match child {
                Some(node) => seq
                    .next_element_seed(NodeSeed {
                        trie: self.trie,
                        node,
                        rec: &mut *self.rec,
                    })?
                    .is_some(),
                None => seq.next_element::<IgnoredAny>()?.is_some(),
            };
            if !more {
                return Ok(());
            }
            index += 1;
        }
    }
}

fn itoa_buf() -> String {
    String::with_capacity(20)
}

fn fmt_index(buf: &mut String, index: usize) -> &str {
    use std::fmt::Write;
    buf.clear();
    let _ = write!(buf, "{index}");
    buf
}

/// Matches an object key against a node's children without allocating.
struct KeySeed<'t> {
    trie: &'t Trie,
    node: u32,
}

impl<'de> DeserializeSeed<'de> for KeySeed<'_> {
    type Value = Option<u32>;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Option<u32>, D::Error> {
        // As bytes: a key is only compared with the profile's names, so it
        // need not be checked for UTF-8 (serde_json then skips that pass).
        d.deserialize_bytes(self)
    }
}

impl<'de> Visitor<'de> for KeySeed<'_> {
    type Value = Option<u32>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object key")
    }

    fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Option<u32>, E> {
        Ok(self.trie.child(self.node, v))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Option<u32>, E> {
        self.visit_bytes(v.as_bytes())
    }
}

/// Walks a whole message: one record, an array of records, or an envelope
/// holding an array of records under `Records` (CloudTrail) or `records`
/// (Azure diagnostic settings). Each finished record is handed to `emit`.
pub struct MessageSeed<'t, 'f, F> {
    /// The compiled profile.
    pub trie: &'t Trie,
    /// Receives each record as soon as it is complete.
    pub emit: &'f mut F,
}

impl<'de, F: FnMut(Record<'de>)> DeserializeSeed<'de> for MessageSeed<'_, '_, F> {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de, F: FnMut(Record<'de>)> Visitor<'de> for MessageSeed<'_, '_, F> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object or array of objects")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        loop {
            let mut rec = Record::default();
            let seed = NodeSeed {
                trie: self.trie,
                node: 0,
                rec: &mut rec,
            };
            if seq.next_element_seed(seed)?.is_none() {
                return Ok(());
            }
            (self.emit)(rec);
        }
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut rec = Record::default();
        let mut envelope = false;
        while let Some(key) = map.next_key_seed(RootKeySeed { trie: self.trie })? {
            match key {
                RootKey::Records => {
                    envelope = true;
                    map.next_value_seed(MessageSeed {
                        trie: self.trie,
                        emit: &mut *self.emit,
                    })?;
                }
                RootKey::Child(node) => map.next_value_seed(NodeSeed {
                    trie: self.trie,
                    node,
                    rec: &mut rec,
                })?,
                RootKey::Other => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        if !envelope {
            (self.emit)(rec);
        }
        Ok(())
    }
}

enum RootKey {
    Records,
    Child(u32),
    Other,
}

struct RootKeySeed<'t> {
    trie: &'t Trie,
}

impl<'de> DeserializeSeed<'de> for RootKeySeed<'_> {
    type Value = RootKey;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<RootKey, D::Error> {
        d.deserialize_bytes(self)
    }
}

impl<'de> Visitor<'de> for RootKeySeed<'_> {
    type Value = RootKey;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object key")
    }

    fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<RootKey, E> {
        if v == b"Records" || v == b"records" {
            return Ok(RootKey::Records);
        }
        Ok(self.trie.child(0, v).map_or(RootKey::Other, RootKey::Child))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<RootKey, E> {
        self.visit_bytes(v.as_bytes())
    }
}
