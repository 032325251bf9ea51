//! The check that keeps a masked session's catalog snapshot honest.
//!
//! Masking decides which relations may carry ruled values from a snapshot of the upstream's
//! catalog taken when the session opened (shared by the connection's sessions for a minute).
//! DDL run outside airlock, by a DBA or a migration, can change a relation under it:
//! `CREATE OR REPLACE VIEW v AS SELECT secret …` keeps the name, so a view the snapshot knows
//! as reading only clean tables would go on counting as clean (round-14 review, F1). So before
//! a statement of a session under column masking runs, the relay asks the upstream what the
//! relations it names are now (and the relations those views read, as the snapshot knows
//! them): type and view definition, from `information_schema`, which shows the current
//! definitions whatever the transaction. A relation the snapshot knows that changed makes the
//! relay read the catalog again; one it does not know (created since) masks the statement's
//! columns as unknown.

use std::collections::{BTreeSet, HashMap};
use std::hash::{Hash, Hasher};

use crate::mask::{is_system_schema, Catalog};

/// Statements naming more relations than this are masked whole rather than checked name by
/// name (a bound on the check's size).
const MAX_CHECKED_NAMES: usize = 1024;

/// How deep view definitions are followed when gathering the names to check.
const MAX_DEPTH: usize = 16;

/// The fingerprint of one catalog row: the relation's type and its view definition.
pub(crate) fn fingerprint(view: bool, definition: Option<&[u8]>) -> u64 {
    // SipHash with fixed keys: the same input gives the same value for the snapshot and the
    // check, within this process (nothing is stored).
    #[allow(deprecated)]
    let mut h = std::hash::SipHasher::new();
    view.hash(&mut h);
    definition.hash(&mut h);
    h.finish()
}

/// The relations one statement's check asks about: `(schema, name)`, lower-cased, with `None`
/// for an unqualified name (which any schema's relation of that name may answer).
pub struct CatalogCheck {
    pub sql: String,
    wanted: Vec<(Option<String>, String)>,
}

/// What the check found.
#[derive(Debug, PartialEq, Eq)]
pub enum Drift {
    Same,
    /// A relation the snapshot knows changed (or was dropped): read the catalog again.
    Changed,
    /// A relation of a checked name that the snapshot does not have: its columns are unknown.
    Unknown,
}

type Row = Vec<Option<Vec<u8>>>;

/// A relation as the check saw it: whether it is a view, and its definition.
type Seen = (bool, Option<Vec<u8>>);

fn split(relation: &str) -> (Option<String>, String) {
    let relation = relation.replace('`', "").to_lowercase();
    match relation.rsplit_once('.') {
        Some((s, n)) => (Some(s.to_owned()), n.to_owned()),
        None => (None, relation),
    }
}

fn literal(s: &str) -> String {
    format!("'{}'", s.replace('\\', "\\\\").replace('\'', "''"))
}

impl Catalog {
    /// The check for a statement naming `relations` (as the classifier reports them), or
    /// `None` when it cannot be sent (too many names, or names outside ASCII, which the
    /// connection's character set might not carry): the statement is then masked whole.
    pub fn check(&self, relations: &[String]) -> Option<CatalogCheck> {
        let mut wanted: BTreeSet<(Option<String>, String)> = BTreeSet::new();
        let mut todo: Vec<(String, usize)> = relations.iter().map(|r| (r.clone(), 0)).collect();
        while let Some((relation, depth)) = todo.pop() {
            let (schema, name) = split(&relation);
            if is_system_schema(schema.as_deref()) || !wanted.insert((schema.clone(), name.clone()))
            {
                continue;
            }
            if wanted.len() > MAX_CHECKED_NAMES || depth > MAX_DEPTH {
                return None;
            }
            // A view the snapshot knows is checked with what it reads, as the snapshot knows
            // it: if it was replaced, its own fingerprint says so.
            for (_, t) in self.matching(schema.as_deref(), &name) {
                if let Some(reads) = &t.reads {
                    todo.extend(reads.iter().map(|r| (r.clone(), depth + 1)));
                }
            }
        }
        if wanted.is_empty() {
            return None;
        }
        if wanted
            .iter()
            .any(|(s, n)| !n.is_ascii() || s.as_ref().is_some_and(|s| !s.is_ascii()))
        {
            return None;
        }
        let names: BTreeSet<&str> = wanted.iter().map(|(_, n)| n.as_str()).collect();
        let names: Vec<String> = names.into_iter().map(literal).collect();
        let filter = format!(
            "LOWER(TABLE_NAME) IN ({}) AND TABLE_SCHEMA NOT IN ('mysql', 'information_schema', 'performance_schema', 'sys')",
            names.join(", ")
        );
        Some(CatalogCheck {
            sql: format!(
                "SELECT 'T', TABLE_SCHEMA, TABLE_NAME, TABLE_TYPE FROM information_schema.TABLES WHERE {filter} \
                 UNION ALL SELECT 'V', TABLE_SCHEMA, TABLE_NAME, VIEW_DEFINITION FROM information_schema.VIEWS WHERE {filter}"
            ),
            wanted: wanted.into_iter().collect(),
        })
    }

    /// The snapshot's relations a name may mean.
    fn matching<'a>(
        &'a self,
        schema: Option<&'a str>,
        name: &'a str,
    ) -> Vec<(&'a str, &'a crate::mask::TableInfo)> {
        let schemas: Vec<&str> = match schema {
            Some(s) => vec![s],
            None => self
                .by_name
                .get(name)
                .map(|v| v.iter().map(String::as_str).collect())
                .unwrap_or_default(),
        };
        schemas
            .into_iter()
            .filter_map(|s| {
                self.tables
                    .get(&(s.to_owned(), name.to_owned()))
                    .map(|t| (s, t))
            })
            .collect()
    }

    /// Compares the check's answer with the snapshot.
    pub fn drift(&self, check: &CatalogCheck, rows: &[Row]) -> Drift {
        let text = |row: &Row, i: usize| -> Option<String> {
            row.get(i)
                .and_then(|v| v.as_deref())
                .map(|b| String::from_utf8_lossy(b).into_owned())
        };
        // Exact (schema, name) → (is a view, definition), then summed per lower-cased name as
        // the snapshot sums them.
        let mut exact: HashMap<(String, String), Seen> = HashMap::new();
        for row in rows {
            let (Some(kind), Some(schema), Some(name)) = (text(row, 0), text(row, 1), text(row, 2))
            else {
                return Drift::Unknown;
            };
            let e = exact.entry((schema, name)).or_default();
            if kind == "T" {
                e.0 = text(row, 3).is_some_and(|t| t.to_lowercase().contains("view"));
            } else {
                e.1 = row.get(3).cloned().flatten();
            }
        }
        let mut now: HashMap<(String, String), u64> = HashMap::new();
        for ((schema, name), (view, definition)) in &exact {
            let f = fingerprint(*view, if *view { definition.as_deref() } else { None });
            let key = (schema.to_lowercase(), name.to_lowercase());
            let sum = now.entry(key).or_default();
            *sum = sum.wrapping_add(f);
        }
        let mut drift = Drift::Same;
        for (schema, name) in &check.wanted {
            let mut keys: BTreeSet<(String, String)> = BTreeSet::new();
            match schema {
                Some(s) => {
                    keys.insert((s.clone(), name.clone()));
                }
                None => {
                    keys.extend(
                        self.by_name
                            .get(name)
                            .into_iter()
                            .flatten()
                            .map(|s| (s.clone(), name.clone())),
                    );
                    keys.extend(now.keys().filter(|(_, n)| n == name).cloned());
                }
            }
            for key in keys {
                match (self.tables.get(&key), now.get(&key)) {
                    (Some(t), Some(f)) if t.fingerprint == *f => {}
                    (Some(_), _) => return Drift::Changed,
                    (None, Some(_)) => drift = Drift::Unknown,
                    (None, None) => {}
                }
            }
        }
        drift
    }

    /// A newer catalog of the same upstream, keeping relations `earlier` did not have out: a
    /// session's view of new relations does not change when it reads the catalog again (a
    /// relation created after the session began stays unknown, so masked), only what the ones
    /// it knew are.
    pub fn keeping_unknown(mut self, earlier: &Catalog) -> Catalog {
        self.tables.retain(|k, _| earlier.tables.contains_key(k));
        for (name, schemas) in self.by_name.iter_mut() {
            schemas.retain(|s| earlier.tables.contains_key(&(s.clone(), name.clone())));
        }
        self.by_name.retain(|_, schemas| !schemas.is_empty());
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(cells: &[Option<&str>]) -> Row {
        cells
            .iter()
            .map(|c| c.map(|s| s.as_bytes().to_vec()))
            .collect()
    }

    fn snapshot() -> Catalog {
        Catalog::from_rows(
            &[
                row(&[Some("app"), Some("t"), Some("BASE TABLE"), None]),
                row(&[
                    Some("app"),
                    Some("v"),
                    Some("VIEW"),
                    Some("select `app`.`plain`.`c` AS `c` from `app`.`plain`"),
                ]),
                row(&[Some("app"), Some("plain"), Some("BASE TABLE"), None]),
            ],
            &[],
        )
    }

    #[test]
    fn a_replaced_view_is_a_change_and_a_new_relation_is_unknown() {
        let c = snapshot();
        let check = c.check(&["v".to_owned()]).unwrap();
        assert!(check.sql.contains("IN ('plain', 'v')"), "{}", check.sql);
        let same = [
            row(&[Some("T"), Some("app"), Some("v"), Some("VIEW")]),
            row(&[
                Some("V"),
                Some("app"),
                Some("v"),
                Some("select `app`.`plain`.`c` AS `c` from `app`.`plain`"),
            ]),
            row(&[Some("T"), Some("app"), Some("plain"), Some("BASE TABLE")]),
        ];
        assert_eq!(c.drift(&check, &same), Drift::Same);
        let mut replaced = same.clone();
        replaced[1] = row(&[
            Some("V"),
            Some("app"),
            Some("v"),
            Some("select `app`.`t`.`secret` AS `c` from `app`.`t`"),
        ]);
        assert_eq!(c.drift(&check, &replaced), Drift::Changed);
        let mut shadowed = same.to_vec();
        shadowed.push(row(&[Some("T"), Some("other"), Some("v"), Some("VIEW")]));
        assert_eq!(c.drift(&check, &shadowed), Drift::Unknown);
        assert_eq!(c.drift(&check, &same[..1]), Drift::Changed, "plain dropped");
        let fresh = Catalog::from_rows(
            &[
                row(&[Some("app"), Some("v"), Some("VIEW"), Some("select 1")]),
                row(&[Some("app"), Some("new"), Some("BASE TABLE"), None]),
            ],
            &[],
        )
        .keeping_unknown(&c);
        assert!(fresh.tables.contains_key(&("app".into(), "v".into())));
        assert!(!fresh.tables.contains_key(&("app".into(), "new".into())));
    }
}
