//! The session's `client_encoding`, as the server reads the client's bytes.
//!
//! The gateway must see statement boundaries exactly where the server does. In every encoding
//! PostgreSQL accepts on the server side, a byte below 0x80 is always the ASCII character it
//! looks like, so quotes, backslashes and semicolons mean the same to both. The client-only
//! encodings (SJIS, SHIFT_JIS_2004, BIG5, GBK, UHC, GB18030, JOHAB) break that: their second
//! byte of a character may be `\` (0x5C) or a quote, so `E'<0x95>\' ; DELETE …'` is one string
//! to a UTF-8 reader and two statements to the server. Those encodings are refused at startup,
//! in `SET`/`set_config`, and if the server ever reports one the session is closed.
//!
//! Text in an ASCII-safe encoding is decoded for the classifier (it wants UTF-8): exactly where
//! `encoding_rs` knows the encoding, byte-for-byte into a private-use character otherwise. The
//! bytes forwarded upstream are never changed.

use std::borrow::Cow;

/// An ASCII-safe client encoding the gateway can read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ClientEncoding {
    #[default]
    Utf8,
    /// ISO-8859-1: byte `b` is the code point `b`.
    Latin1,
    /// One that `encoding_rs` decodes exactly (windows-125x, ISO-8859-x, KOI8, EUC-JP/KR/CN).
    Known(KnownEncoding),
    /// ASCII-safe but without a decoder here (SQL_ASCII, MULE_INTERNAL, EUC_TW, ...): bytes
    /// at or above 0x80 are mapped one-to-one to private-use characters.
    Bytewise,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KnownEncoding {
    Windows(u16),
    Iso8859(u8),
    Koi8R,
    Koi8U,
    EucJp,
    EucKr,
    EucCn,
}

/// Why an encoding is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodingError {
    #[error("client_encoding `{0}` is not supported through airlock: in it a backslash or quote can be the second byte of a character, so airlock could not see statements where the server does; use UTF8 (or another ASCII-safe encoding such as LATIN1, WIN1252, EUC_JP)")]
    Unsafe(String),
    #[error("client_encoding `{0}` is not an encoding PostgreSQL knows")]
    Unknown(String),
}

/// PostgreSQL's `clean_encoding_name`: letters and digits only, lower-case.
fn clean(name: &str) -> String {
    name.chars()
        .filter(char::is_ascii_alphanumeric)
        .map(|c| c.to_ascii_lowercase())
        .collect()
}

impl ClientEncoding {
    /// Parses an encoding name as PostgreSQL does (`UTF8`, `utf-8`, `Latin1`, `win1252`, ...).
    pub fn parse(name: &str) -> Result<ClientEncoding, EncodingError> {
        use ClientEncoding as E;
        use KnownEncoding as K;
        let c = clean(name);
        let enc = match c.as_str() {
            "utf8" | "unicode" => E::Utf8,
            "latin1" | "iso88591" => E::Latin1,
            "sqlascii" | "muleinternal" | "euctw" | "eucjis2004" | "tcvn" | "tcvn5712"
            | "vscii" | "abc" => E::Bytewise,
            "eucjp" => E::Known(K::EucJp),
            "euckr" => E::Known(K::EucKr),
            "euccn" => E::Known(K::EucCn),
            "koi8" | "koi8r" => E::Known(K::Koi8R),
            "koi8u" => E::Known(K::Koi8U),
            "alt" | "win866" | "windows866" => E::Known(K::Windows(866)),
            "win874" | "windows874" => E::Known(K::Windows(874)),
            "win" | "win1251" | "windows1251" => E::Known(K::Windows(1251)),
            "latin2" | "iso88592" => E::Known(K::Iso8859(2)),
            "latin3" | "iso88593" => E::Known(K::Iso8859(3)),
            "latin4" | "iso88594" => E::Known(K::Iso8859(4)),
            "iso88595" => E::Known(K::Iso8859(5)),
            "iso88596" => E::Known(K::Iso8859(6)),
            "iso88597" => E::Known(K::Iso8859(7)),
            "iso88598" => E::Known(K::Iso8859(8)),
            // LATIN5 (ISO-8859-9) and LATIN9 (8859-15) etc. have no exact WHATWG decoder for
            // every byte: read byte-wise.
            "latin5" | "iso88599" | "latin6" | "iso885910" | "latin7" | "iso885913" | "latin8"
            | "iso885914" | "latin9" | "iso885915" | "latin10" | "iso885916" => E::Bytewise,
            "sjis" | "shiftjis" | "mskanji" | "win932" | "windows932" | "shiftjis2004" | "big5"
            | "win950" | "windows950" | "gbk" | "win936" | "windows936" | "uhc" | "win949"
            | "windows949" | "gb18030" | "johab" => {
                return Err(EncodingError::Unsafe(name.to_owned()))
            }
            other => match other
                .strip_prefix("windows")
                .or_else(|| other.strip_prefix("win"))
                .and_then(|n| n.parse::<u16>().ok())
            {
                Some(n @ 1250..=1258) => E::Known(K::Windows(n)),
                _ => return Err(EncodingError::Unknown(name.to_owned())),
            },
        };
        Ok(enc)
    }

    /// Whether `name` is an encoding a client may use through the gateway.
    pub fn check(name: &str) -> Result<(), EncodingError> {
        ClientEncoding::parse(name).map(|_| ())
    }

    /// The text of a message string for the classifier. UTF-8 must be valid (the server
    /// rejects it otherwise); other encodings always decode, one-to-one.
    pub fn decode<'a>(self, bytes: &'a [u8]) -> Option<Cow<'a, str>> {
        if bytes.is_ascii() {
            return std::str::from_utf8(bytes).ok().map(Cow::Borrowed);
        }
        match self {
            ClientEncoding::Utf8 => std::str::from_utf8(bytes).ok().map(Cow::Borrowed),
            ClientEncoding::Latin1 => {
                Some(Cow::Owned(bytes.iter().map(|&b| char::from(b)).collect()))
            }
            ClientEncoding::Known(k) => Some(
                k.decoder()
                    .decode_without_bom_handling_and_without_replacement(bytes)
                    .map(|s| Cow::Owned(s.into_owned()))
                    .unwrap_or_else(|| Cow::Owned(bytewise(bytes))),
            ),
            ClientEncoding::Bytewise => Some(Cow::Owned(bytewise(bytes))),
        }
    }
}

impl KnownEncoding {
    fn decoder(self) -> &'static encoding_rs::Encoding {
        use encoding_rs as rs;
        match self {
            KnownEncoding::Windows(866) => rs::IBM866,
            KnownEncoding::Windows(874) => rs::WINDOWS_874,
            KnownEncoding::Windows(1250) => rs::WINDOWS_1250,
            KnownEncoding::Windows(1251) => rs::WINDOWS_1251,
            KnownEncoding::Windows(1252) => rs::WINDOWS_1252,
            KnownEncoding::Windows(1253) => rs::WINDOWS_1253,
            KnownEncoding::Windows(1254) => rs::WINDOWS_1254,
            KnownEncoding::Windows(1255) => rs::WINDOWS_1255,
            KnownEncoding::Windows(1256) => rs::WINDOWS_1256,
            KnownEncoding::Windows(1257) => rs::WINDOWS_1257,
            KnownEncoding::Windows(_) => rs::WINDOWS_1258,
            KnownEncoding::Iso8859(2) => rs::ISO_8859_2,
            KnownEncoding::Iso8859(3) => rs::ISO_8859_3,
            KnownEncoding::Iso8859(4) => rs::ISO_8859_4,
            KnownEncoding::Iso8859(5) => rs::ISO_8859_5,
            KnownEncoding::Iso8859(6) => rs::ISO_8859_6,
            KnownEncoding::Iso8859(7) => rs::ISO_8859_7,
            KnownEncoding::Iso8859(_) => rs::ISO_8859_8,
            KnownEncoding::Koi8R => rs::KOI8_R,
            KnownEncoding::Koi8U => rs::KOI8_U,
            KnownEncoding::EucJp => rs::EUC_JP,
            KnownEncoding::EucKr => rs::EUC_KR,
            KnownEncoding::EucCn => rs::GBK,
        }
    }
}

/// Bytes below 0x80 as themselves, the others as U+F700 + byte: distinct inputs stay distinct,
/// and every non-ASCII byte is an identifier character to the grammar, as to the server.
fn bytewise(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|&b| {
            if b < 0x80 {
                char::from(b)
            } else {
                char::from_u32(0xF700 + u32::from(b)).unwrap_or(char::REPLACEMENT_CHARACTER)
            }
        })
        .collect()
}

/// The encoding a shared cell holds, for the two relay tasks (the upstream task learns changes
/// from `ParameterStatus`, the client task decodes with it).
#[derive(Debug, Default)]
pub struct SharedEncoding(std::sync::Mutex<ClientEncoding>);

impl SharedEncoding {
    pub fn new(e: ClientEncoding) -> Self {
        SharedEncoding(std::sync::Mutex::new(e))
    }

    pub fn get(&self) -> ClientEncoding {
        *self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn set(&self, e: ClientEncoding) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = e;
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn client_only_encodings_are_refused_in_every_spelling() {
        for name in [
            "SJIS",
            "sjis",
            "Shift_JIS",
            "SHIFT_JIS_2004",
            "mskanji",
            "WIN932",
            "BIG5",
            "big-5",
            "GBK",
            "cp936",
            "UHC",
            "GB18030",
            "gb-18030",
            "JOHAB",
            "Windows949",
        ] {
            let got = ClientEncoding::parse(name);
            assert!(
                matches!(
                    got,
                    Err(EncodingError::Unsafe(_)) | Err(EncodingError::Unknown(_))
                ),
                "{name}: {got:?}"
            );
        }
        assert!(matches!(
            ClientEncoding::parse("SJIS"),
            Err(EncodingError::Unsafe(_))
        ));
    }

    #[test]
    fn ascii_safe_encodings_are_accepted() {
        for name in [
            "UTF8",
            "utf-8",
            "unicode",
            "LATIN1",
            "latin9",
            "WIN1252",
            "windows-1251",
            "KOI8R",
            "EUC_JP",
            "euc-kr",
            "EUC_CN",
            "SQL_ASCII",
            "MULE_INTERNAL",
            "ISO_8859_5",
            "WIN866",
        ] {
            assert!(ClientEncoding::parse(name).is_ok(), "{name}");
        }
        assert!(matches!(
            ClientEncoding::parse("klingon"),
            Err(EncodingError::Unknown(_))
        ));
    }

    #[test]
    fn non_utf8_text_decodes_one_to_one_and_keeps_ascii() {
        let latin1 = ClientEncoding::parse("LATIN1").unwrap();
        assert_eq!(latin1.decode(b"SELECT 'caf\xe9'").unwrap(), "SELECT 'café'");
        let win = ClientEncoding::parse("WIN1251").unwrap();
        assert_eq!(win.decode(b"\xcf\xf0\xe8").unwrap(), "При");
        let raw = ClientEncoding::parse("SQL_ASCII").unwrap();
        let a = raw.decode(b"SELECT '\x80\\' ; x").unwrap().into_owned();
        let b = raw.decode(b"SELECT '\x81\\' ; x").unwrap().into_owned();
        assert_ne!(a, b);
        assert!(a.starts_with("SELECT '") && a.ends_with("\\' ; x"));
        assert!(ClientEncoding::Utf8.decode(b"\xff").is_none());
    }
}
