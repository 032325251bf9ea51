//! The classifiers the gate judges commands with, one per connection type. The binary registers
//! them; the gate looks one up when a session opens and never branches on the protocol.

use airlock_core::{Classifier, ConnectionType};
use std::collections::HashMap;
use std::sync::Arc;

#[derive(Default, Clone)]
pub struct Classifiers {
    by_type: HashMap<ConnectionType, Arc<dyn Classifier>>,
}

impl Classifiers {
    pub fn new() -> Self {
        Self::default()
    }

    /// `classifier` judges every command of `kind` connections (a second registration replaces
    /// the first).
    pub fn register(mut self, kind: ConnectionType, classifier: Arc<dyn Classifier>) -> Self {
        self.by_type.insert(kind, classifier);
        self
    }

    pub fn get(&self, kind: ConnectionType) -> Option<&Arc<dyn Classifier>> {
        self.by_type.get(&kind)
    }
}

impl std::fmt::Debug for Classifiers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut kinds: Vec<&str> = self.by_type.keys().map(|k| k.as_str()).collect();
        kinds.sort_unstable();
        f.debug_struct("Classifiers")
            .field("types", &kinds)
            .finish()
    }
}
