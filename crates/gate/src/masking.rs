//! `[[masking]]` policies compiled for the data path: which policies apply to a session, the
//! column rules lineage is computed against, and the maskers that rewrite values.
//!
//! Compiled once per configuration (on reload too); a session takes an `Arc` of the part that
//! applies to it when it opens, so a reload never changes masking in the middle of a result.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use airlock_config::{Config, Connection, MaskStrategy, MaskingPolicy};
use airlock_core::Identity;
use airlock_mask::{
    ColumnEntity, CustomPattern, Detector, MaskCounts, MaskSpec, Masked, Masker, Strategy,
    WITHHELD_PLACEHOLDER,
};
use airlock_sql::lineage::{ColumnRule, DERIVED_MARKER};
pub use airlock_store::MaskedCounts;

/// File in `data_dir` holding the HMAC key of the `hash` strategy (created once, 0600).
pub const HASH_KEY_FILE: &str = "masking-hash.key";

/// The source of a column masked because its lineage was not established.
pub const UNKNOWN_MARKER: &str = "?unknown";

/// A `[[masking]]` policy ready to use.
struct Compiled {
    policy: MaskingPolicy,
    rules: Vec<ColumnRule>,
    masker: Arc<Masker>,
}

/// Every masking policy of a configuration.
#[derive(Default)]
pub struct MaskingSet {
    policies: Vec<Compiled>,
    /// Policies that could not be compiled; a session they would apply to is refused.
    broken: Vec<(String, String)>,
}

/// What applies to one session.
pub struct SessionMasking {
    /// Policy names, for the audit trail.
    pub policies: Vec<String>,
    /// Every column rule of every applying policy (lineage is computed against these).
    pub rules: Vec<ColumnRule>,
    /// For each rule (by its text): the masker whose strategy rewrites the column, and the
    /// entity its values are counted as.
    column: BTreeMap<String, (Arc<Masker>, Arc<ColumnEntity>)>,
    /// Maskers with content detectors, applied in order to every value.
    pub content: Vec<Arc<Masker>>,
    /// Masker used for columns whose lineage is unknown (the first applying policy's).
    fallback: Option<(Arc<Masker>, Arc<ColumnEntity>)>,
}

/// What the set decided for a session.
pub enum Applies {
    None,
    /// Only exempt-group policies matched: data passes, the audit trail says why.
    Exempt(Vec<String>),
    Mask(Arc<SessionMasking>, Vec<String>),
    /// A policy applies but could not be compiled: fail closed.
    Broken(String),
}

impl MaskingSet {
    pub fn compile(config: &Config) -> MaskingSet {
        let mut set = MaskingSet::default();
        if config.masking.is_empty() {
            return set;
        }
        let key = if config
            .masking
            .iter()
            .any(|m| m.strategy == MaskStrategy::Hash)
        {
            match hash_key(&config.gateway.data_dir) {
                Ok(k) => k,
                Err(e) => {
                    for m in &config.masking {
                        set.broken.push((
                            m.name.clone(),
                            format!("the hash key in data_dir could not be read or created: {e}"),
                        ));
                    }
                    return set;
                }
            }
        } else {
            Vec::new()
        };
        for policy in &config.masking {
            let spec = MaskSpec {
                detectors: policy
                    .detectors
                    .iter()
                    .filter_map(|d| Detector::parse(d.as_str()))
                    .collect(),
                custom: policy
                    .custom
                    .iter()
                    .map(|c| CustomPattern {
                        name: c.name.clone(),
                        regex: c.regex.as_str().to_owned(),
                    })
                    .collect(),
                strategy: match policy.strategy {
                    MaskStrategy::Redact => Strategy::Redact,
                    MaskStrategy::Partial => Strategy::Partial,
                    MaskStrategy::Hash => Strategy::Hash,
                    MaskStrategy::Null => Strategy::Null,
                },
                hash_key: key.clone(),
                max_value_bytes: config.gateway.mask_max_value_bytes,
            };
            let options = airlock_mask::DetectorOptions {
                phone_regions: policy.phone_regions.clone(),
            };
            let masker = match Masker::with_options(spec, options) {
                Ok(m) => Arc::new(m),
                Err(e) => {
                    set.broken.push((policy.name.clone(), e.to_string()));
                    continue;
                }
            };
            let rules = policy
                .columns
                .iter()
                .filter_map(|c| ColumnRule::parse(c))
                .collect();
            set.policies.push(Compiled {
                policy: policy.clone(),
                rules,
                masker,
            });
        }
        set
    }

    pub fn is_empty(&self) -> bool {
        self.policies.is_empty() && self.broken.is_empty()
    }

    /// The policies that apply to `identity` on `connection`.
    pub fn for_session(&self, identity: &Identity, connection: &Connection) -> Applies {
        let applies = |p: &MaskingPolicy| {
            let conn_ok = p
                .connections
                .as_ref()
                .is_none_or(|sel| connection.selected_by(sel));
            let who_ok = (p.identities.is_empty() && p.groups.is_empty())
                || p.identities.contains(&identity.name)
                || p.groups.iter().any(|g| identity.in_group(g));
            conn_ok && who_ok
        };
        let exempt = |p: &MaskingPolicy| p.exempt_groups.iter().any(|g| identity.in_group(g));
        for (name, error) in &self.broken {
            if let Some(p) = self.policies.iter().find(|c| &c.policy.name == name) {
                if !applies(&p.policy) {
                    continue;
                }
            }
            return Applies::Broken(format!("masking policy `{name}` is unusable: {error}"));
        }
        let mut exempted = Vec::new();
        let mut applied: Vec<&Compiled> = Vec::new();
        for c in &self.policies {
            if !applies(&c.policy) {
                continue;
            }
            if exempt(&c.policy) {
                exempted.push(c.policy.name.clone());
            } else {
                applied.push(c);
            }
        }
        if applied.is_empty() {
            return if exempted.is_empty() {
                Applies::None
            } else {
                Applies::Exempt(exempted)
            };
        }
        let mut m = SessionMasking {
            policies: applied.iter().map(|c| c.policy.name.clone()).collect(),
            rules: Vec::new(),
            column: BTreeMap::new(),
            content: Vec::new(),
            fallback: None,
        };
        for c in applied {
            for rule in &c.rules {
                let entity = Arc::new(ColumnEntity::new(&entity_for_column(rule.text())));
                if m.fallback.is_none() {
                    m.fallback = Some((c.masker.clone(), Arc::new(ColumnEntity::new("column"))));
                }
                m.column
                    .entry(rule.text().to_owned())
                    .or_insert_with(|| (c.masker.clone(), entity));
                m.rules.push(rule.clone());
            }
            if !c.masker.detectors().is_empty() || !c.policy.custom.is_empty() {
                m.content.push(c.masker.clone());
            }
        }
        Applies::Mask(Arc::new(m), exempted)
    }
}

impl SessionMasking {
    pub fn has_column_rules(&self) -> bool {
        !self.rules.is_empty()
    }

    /// The masker and entity for a column masked because it derives from `sources` (rule
    /// texts; `?unknown` when lineage was not established).
    pub fn column_masker<'a>(
        &'a self,
        sources: &std::collections::BTreeSet<String>,
    ) -> Option<(&'a Masker, &'a ColumnEntity)> {
        sources
            .iter()
            .find_map(|s| self.column.get(s))
            .or(self.fallback.as_ref())
            .map(|(m, e)| (&**m, &**e))
    }
}

/// What masking made of one value (for adapters that rewrite values themselves).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rewrite {
    Same,
    Bytes(Vec<u8>),
    Null,
}

/// Masked counts of one statement's result: per entity and per column rule.
#[derive(Debug, Default)]
pub struct Tally {
    pub entities: MaskCounts,
    pub columns: BTreeMap<String, u64>,
}

impl Tally {
    pub fn column(&mut self, source: &str) {
        *self.columns.entry(source.to_owned()).or_default() += 1;
    }

    /// The counts for the audit event; the tally starts again from zero.
    pub fn take(&mut self) -> MaskedCounts {
        let mut out = MaskedCounts::default();
        for (entity, n) in self.entities.iter() {
            out.entities.insert(entity.to_owned(), n);
        }
        if self.entities.withheld() > 0 {
            out.entities
                .insert("withheld".to_owned(), self.entities.withheld());
        }
        out.columns = std::mem::take(&mut self.columns);
        self.entities.clear();
        out
    }
}

impl SessionMasking {
    /// The first column rule naming `column` of `table` (`schema` when known): for protocols
    /// that describe each result column's base table and column (MySQL's `org_table`).
    pub fn rule_for(&self, schema: Option<&str>, table: &str, column: &str) -> Option<&ColumnRule> {
        self.rules.iter().find(|r| r.matches(schema, table, column))
    }

    /// A whole value of a column derived from `sources` (rule texts, `?unknown`, `?derived`),
    /// rewritten by the strategy of the first applying rule.
    pub fn mask_whole(
        &self,
        sources: &std::collections::BTreeSet<String>,
        value: &[u8],
        tally: &mut Tally,
    ) -> Rewrite {
        for s in sources.iter().filter(|s| s.as_str() != DERIVED_MARKER) {
            tally.column(s);
        }
        match self.mask_column_value(sources, value, &mut tally.entities) {
            None | Some(Masked::Null) => Rewrite::Null,
            Some(other) => Rewrite::Bytes(other.bytes().unwrap_or(WITHHELD_PLACEHOLDER).to_vec()),
        }
    }

    /// One value of a column masked because it derives from `sources`; `None` when no masker
    /// applies (the caller withholds the value). Values computed from a masked column
    /// ([`DERIVED_MARKER`]) are redacted whole under `partial` and `hash`:
    /// `substr(card, 5, 4)` would show four more digits per query, and the hash of a short
    /// piece is reversed with a dictionary.
    pub fn mask_column_value<'a>(
        &'a self,
        sources: &std::collections::BTreeSet<String>,
        value: &'a [u8],
        entities: &mut MaskCounts,
    ) -> Option<Masked<'a>> {
        let (masker, entity) = self.column_masker(sources)?;
        let masked = masker.mask_column(value, entity, entities);
        // A value whose lineage is unknown may be computed too: the same rule applies.
        let derived = sources.contains(DERIVED_MARKER) || sources.contains(UNKNOWN_MARKER);
        if derived && matches!(masker.strategy(), Strategy::Partial | Strategy::Hash) {
            return Some(Masked::Replaced(std::borrow::Cow::Borrowed(
                entity.redacted(),
            )));
        }
        Some(masked)
    }

    /// Every content detector of every applying policy over one textual value.
    pub fn mask_content(&self, value: &[u8], tally: &mut Tally) -> Rewrite {
        let mut current: Option<Vec<u8>> = None;
        for masker in &self.content {
            let input = current.as_deref().unwrap_or(value);
            let next = match masker.mask_text(input, &mut tally.entities) {
                Masked::Unchanged(_) => continue,
                Masked::Null => return Rewrite::Null,
                Masked::Withheld => WITHHELD_PLACEHOLDER.to_vec(),
                Masked::Replaced(b) => b.into_owned(),
            };
            current = Some(next);
        }
        match current {
            Some(b) => Rewrite::Bytes(b),
            None => Rewrite::Same,
        }
    }
}

/// The entity a masked column's values are counted as: a detector's name when the column name
/// says what it holds (`card_number` → `credit_card`), else the column name.
fn entity_for_column(rule: &str) -> String {
    let column = rule.rsplit('.').next().unwrap_or(rule).to_ascii_lowercase();
    let guess = if column.contains("email") {
        "email"
    } else if column.contains("card") || column == "pan" {
        "credit_card"
    } else if column.contains("iban") {
        "iban"
    } else if column.contains("ssn") || column.contains("social") {
        "ssn"
    } else if column.contains("phone") || column.contains("mobile") {
        "phone"
    } else if column == "*" {
        "column"
    } else {
        return column;
    };
    guess.to_owned()
}

/// Reads the hash-strategy key, creating it (32 random bytes, mode 0600) on first use.
pub fn hash_key(data_dir: &Path) -> std::io::Result<Vec<u8>> {
    let path = data_dir.join(HASH_KEY_FILE);
    match std::fs::read(&path) {
        Ok(k) if k.len() >= airlock_mask::MIN_HASH_KEY_BYTES => return Ok(k),
        Ok(_) => {
            return Err(std::io::Error::other(format!(
                "{} is shorter than {} bytes",
                path.display(),
                airlock_mask::MIN_HASH_KEY_BYTES
            )))
        }
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        Err(_) => {}
    }
    std::fs::create_dir_all(data_dir)?;
    let key: [u8; 32] = rand::random();
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    use std::io::Write;
    let mut f = opts.open(&path)?;
    f.write_all(&key)?;
    f.sync_all()?;
    Ok(key.to_vec())
}
