//! Typed values over the byte cache: a compact, versioned envelope.
//!
//! Every typed entry is `magic (1) | encoding (1) | version (u16 BE) |
//! kind hash (u32 BE) | body`. A reader that finds another magic, kind or
//! version treats the entry as a miss: during a rolling upgrade the old and
//! the new binary each ignore what the other wrote instead of misreading it,
//! and callers already handle a miss (log in again, code expired, …).

use std::future::Future;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::{Cache, CacheError};

/// First byte of every typed entry; anything else was not written by these helpers.
const MAGIC: u8 = 0xC7;
/// Bytes before the body.
const HEADER_LEN: usize = 8;
/// Largest body bincode may allocate for while decoding, so a corrupt length
/// prefix cannot make us allocate gigabytes.
const BINCODE_LIMIT: usize = 16 * 1024 * 1024;

/// How the body of a typed entry is serialised.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// serde_json: works for every serde type (including `serde_json::Value`,
    /// internally tagged enums, `skip_serializing_if`).
    Json,
    /// bincode (standard config): smaller and faster, but only for types whose
    /// serde impls do not need `deserialize_any` (no `serde_json::Value`, no
    /// `#[serde(flatten)]`/untagged enums, no `skip_serializing_if`).
    Bincode,
}

impl Encoding {
    fn tag(self) -> u8 {
        match self {
            Self::Json => 1,
            Self::Bincode => 2,
        }
    }
}

/// A type stored in the cache declares what it is and which layout version it has.
///
/// Bump `VERSION` whenever the serialised layout changes incompatibly; entries
/// of the old version then read as misses.
pub trait Versioned {
    /// A stable name of the entry kind, e.g. `"oidc.code"`.
    const KIND: &'static str;
    /// The layout version of this type.
    const VERSION: u16;
    /// Body encoding; JSON unless the type opts into bincode.
    const ENCODING: Encoding = Encoding::Json;

    /// Reads an entry written before this layer (no header at all), so that
    /// records survive the upgrade that introduces it; `None` by default.
    fn from_legacy(bytes: &[u8]) -> Option<Self>
    where
        Self: Sized,
    {
        let _ = bytes;
        None
    }
}

/// Why a stored entry could not be read as the requested type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecodeMiss {
    /// Not a typed entry, or another encoding than the type declares.
    Format,
    /// Written for another kind of entry.
    Kind,
    /// Written with another layout version.
    Version,
    /// The header matched but the body does not deserialise.
    Body,
}

impl DecodeMiss {
    /// A fixed label for metrics and logs.
    pub fn label(self) -> &'static str {
        match self {
            Self::Format => "format",
            Self::Kind => "kind",
            Self::Version => "version",
            Self::Body => "body",
        }
    }
}

/// FNV-1a: a fixed, dependency-free hash so the kind check costs 4 bytes, not the name.
const fn kind_hash(kind: &str) -> u32 {
    let bytes = kind.as_bytes();
    let mut hash: u32 = 0x811c_9dc5;
    let mut i = 0;
    while i < bytes.len() {
        hash ^= bytes[i] as u32;
        hash = hash.wrapping_mul(0x0100_0193);
        i += 1;
    }
    hash
}

fn bincode_config() -> impl bincode::config::Config {
    bincode::config::standard().with_limit::<BINCODE_LIMIT>()
}

/// Serialises `value` with its envelope.
pub fn encode<T: Versioned + Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, CacheError> {
    let mut out = Vec::with_capacity(64);
    out.push(MAGIC);
    out.push(T::ENCODING.tag());
    out.extend_from_slice(&T::VERSION.to_be_bytes());
    out.extend_from_slice(&kind_hash(T::KIND).to_be_bytes());
    match T::ENCODING {
        Encoding::Json => serde_json::to_writer(&mut out, value)
            .map_err(|e| CacheError::Encode(format!("{}: {}", T::KIND, e.classify_label())))?,
        Encoding::Bincode => {
            let body = bincode::serde::encode_to_vec(value, bincode_config())
                .map_err(|_| CacheError::Encode(format!("{}: bincode", T::KIND)))?;
            out.extend_from_slice(&body);
        }
    }
    Ok(out)
}

/// Reads an entry written by [`encode`] for the same kind and version.
pub fn decode<T: Versioned + DeserializeOwned>(bytes: &[u8]) -> Result<T, DecodeMiss> {
    let Some((header, body)) = bytes.split_first_chunk::<HEADER_LEN>() else {
        return Err(DecodeMiss::Format);
    };
    if header[0] != MAGIC || header[1] != T::ENCODING.tag() {
        return Err(DecodeMiss::Format);
    }
    if u32::from_be_bytes([header[4], header[5], header[6], header[7]]) != kind_hash(T::KIND) {
        return Err(DecodeMiss::Kind);
    }
    if u16::from_be_bytes([header[2], header[3]]) != T::VERSION {
        return Err(DecodeMiss::Version);
    }
    match T::ENCODING {
        Encoding::Json => serde_json::from_slice(body).map_err(|_| DecodeMiss::Body),
        Encoding::Bincode => match bincode::serde::decode_from_slice(body, bincode_config()) {
            // Trailing bytes mean the layout is not what we think it is.
            Ok((value, read)) if read == body.len() => Ok(value),
            _ => Err(DecodeMiss::Body),
        },
    }
}

/// serde_json's error category, without the message (which may quote data).
trait ClassifyLabel {
    fn classify_label(&self) -> &'static str;
}

impl ClassifyLabel for serde_json::Error {
    fn classify_label(&self) -> &'static str {
        match self.classify() {
            serde_json::error::Category::Io => "io",
            serde_json::error::Category::Syntax => "syntax",
            serde_json::error::Category::Data => "data",
            serde_json::error::Category::Eof => "eof",
        }
    }
}

/// Decodes a raw entry, turning an unreadable one into a counted, logged miss.
fn decode_or_miss<C, T>(cache: &C, raw: Option<Vec<u8>>) -> Option<T>
where
    C: Cache + ?Sized,
    T: Versioned + DeserializeOwned,
{
    let raw = raw?;
    match decode::<T>(&raw) {
        Ok(value) => Some(value),
        Err(DecodeMiss::Format) if T::from_legacy(&raw).is_some() => T::from_legacy(&raw),
        Err(miss) => {
            cache.record_decode_miss(miss.label());
            tracing::debug!(
                kind = T::KIND,
                version = T::VERSION,
                reason = miss.label(),
                "unreadable cache entry treated as a miss"
            );
            None
        }
    }
}

/// Typed helpers on every [`Cache`], including `dyn Cache`.
///
/// Values are encoded before the returned future starts, so `T` need not be `Sync`.
pub trait CacheExt: Cache {
    /// The entry under `key` as a `T`; a missing or unreadable entry is `None`.
    fn get_typed<T>(&self, key: &str) -> impl Future<Output = Result<Option<T>, CacheError>> + Send
    where
        T: Versioned + DeserializeOwned,
    {
        async move {
            let raw = self.get(key).await?;
            Ok(decode_or_miss(self, raw))
        }
    }

    /// Stores `value` under `key` for `ttl`.
    fn set_typed<T>(
        &self,
        key: &str,
        value: &T,
        ttl: Duration,
    ) -> impl Future<Output = Result<(), CacheError>> + Send
    where
        T: Versioned + Serialize + ?Sized,
    {
        let encoded = encode(value);
        async move { self.set(key, &encoded?, ttl).await }
    }

    /// Stores `value` only if `key` is absent; `true` when stored.
    fn set_if_absent_typed<T>(
        &self,
        key: &str,
        value: &T,
        ttl: Duration,
    ) -> impl Future<Output = Result<bool, CacheError>> + Send
    where
        T: Versioned + Serialize + ?Sized,
    {
        let encoded = encode(value);
        async move { self.set_if_absent(key, &encoded?, ttl).await }
    }

    /// Atomically reads and deletes `key`. An unreadable entry is deleted too
    /// and reads as `None`: a single-use value must not survive a failed read.
    fn take_typed<T>(&self, key: &str) -> impl Future<Output = Result<Option<T>, CacheError>> + Send
    where
        T: Versioned + DeserializeOwned,
    {
        async move {
            let raw = self.take(key).await?;
            Ok(decode_or_miss(self, raw))
        }
    }
}

impl<C: Cache + ?Sized> CacheExt for C {}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::*;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct V1 {
        a: u32,
    }
    impl Versioned for V1 {
        const KIND: &'static str = "test.thing";
        const VERSION: u16 = 1;
    }

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct V2 {
        a: u32,
    }
    impl Versioned for V2 {
        const KIND: &'static str = "test.thing";
        const VERSION: u16 = 2;
    }

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Other {
        a: u32,
    }
    impl Versioned for Other {
        const KIND: &'static str = "test.other";
        const VERSION: u16 = 1;
    }

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Compact {
        a: u64,
        s: String,
    }
    impl Versioned for Compact {
        const KIND: &'static str = "test.compact";
        const VERSION: u16 = 1;
        const ENCODING: Encoding = Encoding::Bincode;
    }

    #[test]
    fn round_trips_json_and_bincode() {
        let bytes = encode(&V1 { a: 7 }).expect("encode");
        assert_eq!(decode::<V1>(&bytes), Ok(V1 { a: 7 }));
        let c = Compact {
            a: u64::MAX,
            s: "é".into(),
        };
        let bytes = encode(&c).expect("encode");
        assert_eq!(decode::<Compact>(&bytes), Ok(c));
    }

    #[test]
    fn mismatches_are_misses_not_panics() {
        let v1 = encode(&V1 { a: 7 }).expect("encode");
        assert_eq!(decode::<V2>(&v1), Err(DecodeMiss::Version));
        assert_eq!(decode::<Other>(&v1), Err(DecodeMiss::Kind));
        assert_eq!(decode::<Compact>(&v1), Err(DecodeMiss::Format));
        assert_eq!(decode::<V1>(b""), Err(DecodeMiss::Format));
        assert_eq!(
            decode::<V1>(b"not an entry at all"),
            Err(DecodeMiss::Format)
        );
        let mut truncated = v1.clone();
        truncated.truncate(v1.len() - 1);
        assert_eq!(decode::<V1>(&truncated), Err(DecodeMiss::Body));
        let compact = encode(&Compact {
            a: 1,
            s: "x".into(),
        })
        .expect("encode");
        let mut trailing = compact.clone();
        trailing.push(0);
        assert_eq!(decode::<Compact>(&trailing), Err(DecodeMiss::Body));
        // A huge length prefix must fail on the limit, not allocate.
        let mut bomb = compact[..HEADER_LEN].to_vec();
        bomb.extend_from_slice(&[1, 253, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x7F]);
        assert_eq!(decode::<Compact>(&bomb), Err(DecodeMiss::Body));
    }
}
