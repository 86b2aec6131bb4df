//! What each file of a manifest directory contributes, and which copy of each object wins.
//!
//! Every file holds its documents' objects and refusals. An object may be claimed by several
//! documents (two files, or one file twice); the first claim in file order, then document
//! order, wins and the others are refused as duplicates naming it. A file whose edit is refused
//! keeps its last valid version of the objects it held (a *kept* claim, which follows the file's
//! documents). Updating a few files touches only the keys they claim: the changes emitted are
//! the difference of those keys' winners before and after.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::Path,
    sync::Arc,
};

use bowline_model::{
    Change, MemberName, Object, ObjectKey, ObjectKind, RejectReason, Rejection,
    cluster::{CLUSTER_ID_PROPERTY, CLUSTERSET_PROPERTY},
    echo,
};

use crate::documents::Document;

/// A file's path relative to the member's directory, shared by its objects' origins.
pub(crate) type FileName = Arc<Path>;

/// Where an object was read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Origin {
    file: FileName,
    line: usize,
    index: usize,
}

impl Origin {
    fn describe(&self) -> String {
        match self.line {
            0 => self.file.display().to_string(),
            line => format!("{}:{line} (document {})", self.file.display(), self.index),
        }
    }
}

/// What a file holds now, as read.
#[derive(Clone, Debug)]
pub(crate) enum Contents {
    /// Its documents, parsed.
    Documents(Vec<Document>),
    /// It exists but could not be read: why.
    Unreadable(String),
}

/// One document of a file, in the file's order.
#[derive(Debug)]
enum Entry {
    Object {
        key: ObjectKey,
        object: Object,
        origin: Origin,
    },
    Refused {
        key: Option<ObjectKey>,
        reason: RejectReason,
        message: String,
        origin: Origin,
    },
}

/// Which copy of an object a claim names; a file's documents come before its kept copies.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Slot {
    /// The object of `entries[i]`.
    Document(usize),
    /// The file's last valid version, kept while its document is refused.
    Kept,
}

type Claim = (FileName, Slot);

/// An object's claims in order, without duplicates. Nearly every object has one, so a sorted
/// vector (one exact allocation) rather than a `BTreeSet` (a node for eleven).
#[derive(Debug, Default)]
struct Claims(Vec<Claim>);

impl Claims {
    fn first(&self) -> Option<&Claim> {
        self.0.first()
    }

    fn insert(&mut self, claim: Claim) {
        if let Err(at) = self.0.binary_search(&claim) {
            self.0.reserve_exact(1);
            self.0.insert(at, claim);
        }
    }

    fn remove(&mut self, claim: &Claim) {
        if let Ok(at) = self.0.binary_search(claim) {
            self.0.remove(at);
        }
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn iter(&self) -> std::slice::Iter<'_, Claim> {
        self.0.iter()
    }
}

impl<'a> IntoIterator for &'a Claims {
    type Item = &'a Claim;
    type IntoIter = std::slice::Iter<'a, Claim>;

    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

#[derive(Debug, Default)]
struct FileState {
    /// Set when the file could not be read.
    unreadable: Option<String>,
    entries: Vec<Entry>,
    kept: BTreeMap<ObjectKey, (Object, Origin)>,
    /// The file's rejections as of the last update, in document order.
    rejections: Vec<Rejection>,
}

impl FileState {
    fn claims(&self) -> impl Iterator<Item = (&ObjectKey, Slot)> {
        let documents = self
            .entries
            .iter()
            .enumerate()
            .filter_map(|(i, e)| match e {
                Entry::Object { key, .. } => Some((key, Slot::Document(i))),
                Entry::Refused { .. } => None,
            });
        documents.chain(self.kept.keys().map(|k| (k, Slot::Kept)))
    }
}

/// Every file's contribution and, per object, its claims in order.
#[derive(Debug)]
pub(crate) struct Index {
    member: MemberName,
    files: BTreeMap<FileName, FileState>,
    /// Never empty; the first claim wins.
    claims: BTreeMap<ObjectKey, Claims>,
}

impl Index {
    pub fn new(member: MemberName) -> Self {
        Self {
            member,
            files: BTreeMap::new(),
            claims: BTreeMap::new(),
        }
    }

    /// The member whose files these are.
    pub fn member(&self) -> &MemberName {
        &self.member
    }

    /// Every object now held, in key order.
    pub fn objects(&self) -> Vec<Object> {
        self.claims
            .iter()
            .filter_map(|(key, claims)| self.object(key, claims.first()?))
            .map(|(object, _)| object.clone())
            .collect()
    }

    /// Every refused document, in file then document order.
    pub fn rejections(&self) -> Vec<Rejection> {
        self.files
            .values()
            .flat_map(|f| f.rejections.iter().cloned())
            .collect()
    }

    /// Replaces the contents of some files (`None`: the file is gone) and returns the changes
    /// of the objects held: deletes, then applies, each in key order.
    pub fn update(&mut self, updates: BTreeMap<FileName, Option<Contents>>) -> Vec<Change> {
        let next: Vec<(FileName, Option<FileState>)> = updates
            .into_iter()
            .map(|(file, contents)| {
                let state = contents.map(|c| self.read(&file, c));
                (file, state)
            })
            .collect();
        let mut touched = BTreeSet::new();
        for (file, state) in &next {
            let old = self.files.get(file).into_iter().flat_map(FileState::claims);
            let new = state.iter().flat_map(FileState::claims);
            touched.extend(old.chain(new).map(|(k, _)| k.clone()));
        }
        let before: Vec<Option<Object>> = touched
            .iter()
            .map(|k| self.winner(k).map(|(o, _)| o.clone()))
            .collect();
        let mut dirty: BTreeSet<FileName> = BTreeSet::new();
        for (file, state) in next {
            if let Some(old) = self.files.remove(&file) {
                for (key, slot) in old.claims() {
                    let claims = self.claims.get_mut(key).expect("claimed keys are indexed");
                    claims.remove(&(file.clone(), slot));
                    if claims.is_empty() {
                        self.claims.remove(key);
                    }
                }
            }
            if let Some(state) = state {
                for (key, slot) in state.claims() {
                    let claims = self.claims.entry(key.clone()).or_default();
                    claims.insert((file.clone(), slot));
                }
                self.files.insert(file.clone(), state);
                dirty.insert(file);
            }
        }
        for key in &touched {
            dirty.extend(
                self.claims
                    .get(key)
                    .into_iter()
                    .flatten()
                    .map(|(f, _)| f.clone()),
            );
            self.drop_lost_kept(key);
        }
        for file in dirty {
            let rejections = self.render(&file);
            if let Some(state) = self.files.get_mut(&file) {
                state.rejections = rejections;
            }
        }
        let mut deletes = Vec::new();
        let mut applies = Vec::new();
        for (key, old) in touched.iter().zip(before) {
            match (old, self.winner(key)) {
                (Some(_), None) => deletes.push(Change::Delete(key.clone())),
                (old, Some((new, _))) if old.as_ref() != Some(new) => {
                    applies.push(Change::Apply(new.clone()));
                }
                _ => {}
            }
        }
        deletes.extend(applies);
        deletes
    }

    /// A file's new state from what it now holds. An invalid edit must not delete what was
    /// there: the objects the file held whose document is now refused are kept at their last
    /// valid version; if a document is too broken to name its object, or the file cannot be
    /// read, every object the file held is kept.
    fn read(&self, file: &FileName, contents: Contents) -> FileState {
        let mut state = FileState::default();
        let mut refused = BTreeSet::new();
        let mut keep_all = false;
        match contents {
            Contents::Unreadable(message) => {
                state.unreadable = Some(message);
                keep_all = true;
            }
            Contents::Documents(documents) => {
                for doc in documents {
                    let origin = Origin {
                        file: file.clone(),
                        line: doc.line,
                        index: doc.index,
                    };
                    state.entries.push(match doc.result {
                        Ok(None) => continue,
                        Ok(Some(object)) => Entry::Object {
                            key: object.key(),
                            object,
                            origin,
                        },
                        Err(e) => {
                            match &e.key {
                                Some(key) => {
                                    refused.insert(key.clone());
                                }
                                None => keep_all = true,
                            }
                            Entry::Refused {
                                key: e.key,
                                reason: e.reason,
                                message: e.message,
                                origin,
                            }
                        }
                    });
                }
            }
        }
        // Most files hold one object: without this, each would keep room for four.
        state.entries.shrink_to_fit();
        let defined: BTreeSet<&ObjectKey> = state.claims().map(|(k, _)| k).collect();
        let held = self.files.get(file).into_iter().flat_map(FileState::claims);
        let kept: BTreeMap<ObjectKey, (Object, Origin)> = held
            .filter(|(key, _)| (keep_all || refused.contains(*key)) && !defined.contains(key))
            .filter_map(|(key, _)| {
                let (object, origin) = self.winner(key)?;
                (origin.file == *file).then(|| (key.clone(), (object.clone(), origin.clone())))
            })
            .collect();
        state.kept = kept;
        state
    }

    /// A kept copy that does not win is forgotten: the object now comes from an earlier file,
    /// and the file no longer holds it (as a rescan of every file would find).
    fn drop_lost_kept(&mut self, key: &ObjectKey) {
        let Some(claims) = self.claims.get_mut(key) else {
            return;
        };
        let lost: Vec<Claim> = claims
            .iter()
            .skip(1)
            .filter(|(_, slot)| *slot == Slot::Kept)
            .cloned()
            .collect();
        for claim in lost {
            claims.remove(&claim);
            if let Some(state) = self.files.get_mut(&claim.0) {
                state.kept.remove(key);
            }
        }
    }

    fn winner(&self, key: &ObjectKey) -> Option<(&Object, &Origin)> {
        self.object(key, self.claims.get(key)?.first()?)
    }

    fn object(&self, key: &ObjectKey, (file, slot): &Claim) -> Option<(&Object, &Origin)> {
        let state = self.files.get(file)?;
        match slot {
            Slot::Kept => state.kept.get(key).map(|(o, origin)| (o, origin)),
            Slot::Document(i) => match state.entries.get(*i)? {
                Entry::Object { object, origin, .. } => Some((object, origin)),
                Entry::Refused { .. } => None,
            },
        }
    }

    /// A file's rejections against the current winners: its copies that lose are duplicates
    /// of the winner; a refused document says whether the file still holds its object.
    fn render(&self, file: &FileName) -> Vec<Rejection> {
        let Some(state) = self.files.get(file) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        if let Some(message) = &state.unreadable {
            let origin = Origin {
                file: file.clone(),
                line: 0,
                index: 0,
            };
            out.push(self.rejection(
                &origin,
                None,
                RejectReason::ParseError,
                format!("cannot read file: {message}"),
            ));
        }
        for (i, entry) in state.entries.iter().enumerate() {
            match entry {
                Entry::Object { key, origin, .. } => {
                    if let Some(message) = self.identity_conflict(key) {
                        out.push(self.rejection(
                            origin,
                            Some(key.clone()),
                            RejectReason::ConflictingClusterProperty,
                            message,
                        ));
                        continue;
                    }
                    let first = self.claims.get(key).and_then(|c| c.first());
                    if first.is_some_and(|c| *c != (file.clone(), Slot::Document(i)))
                        && let Some((_, winner)) = self.winner(key)
                    {
                        let message = format!(
                            "{key} is already defined at {}; this copy is ignored",
                            winner.describe()
                        );
                        out.push(self.rejection(
                            origin,
                            Some(key.clone()),
                            RejectReason::DuplicateObject,
                            message,
                        ));
                    }
                }
                Entry::Refused {
                    key,
                    reason,
                    message,
                    origin,
                } => {
                    let kept = key
                        .as_ref()
                        .and_then(|k| self.winner(k))
                        .is_some_and(|(_, o)| o.file == *file);
                    let message = if kept {
                        format!("{message}; its last valid version is kept")
                    } else {
                        message.clone()
                    };
                    out.push(self.rejection(origin, key.clone(), *reason, message));
                }
            }
        }
        out
    }

    /// When the copies of an identity ClusterProperty disagree, what every copy is told: no
    /// copy wins silently, since the first in file order may be a stray file. Copies that
    /// agree are ordinary duplicates.
    fn identity_conflict(&self, key: &ObjectKey) -> Option<String> {
        if !is_identity_property(key) {
            return None;
        }
        let copies: Vec<(&str, &Origin)> = self
            .claims
            .get(key)?
            .iter()
            .filter_map(|claim| match self.object(key, claim)? {
                (Object::ClusterProperty(p), origin) => Some((p.value.as_str(), origin)),
                _ => None,
            })
            .collect();
        let first = copies.first()?.0;
        copies
            .iter()
            .any(|(value, _)| *value != first)
            .then(|| conflict_message(key, &copies))
    }

    fn rejection(
        &self,
        origin: &Origin,
        object: Option<ObjectKey>,
        reason: RejectReason,
        message: String,
    ) -> Rejection {
        Rejection {
            member: self.member.clone(),
            origin: origin.describe(),
            object,
            reason,
            message,
        }
    }
}

/// The ClusterProperties that decide a member's identity.
fn is_identity_property(key: &ObjectKey) -> bool {
    key.kind == ObjectKind::ClusterProperty
        && [CLUSTER_ID_PROPERTY, CLUSTERSET_PROPERTY].contains(&&*key.name)
}

fn conflict_message(key: &ObjectKey, copies: &[(&str, &Origin)]) -> String {
    let listed: Vec<String> = copies
        .iter()
        .map(|(value, origin)| format!("{:?} at {}", echo::capped(value, 128), origin.describe()))
        .collect();
    format!(
        "{key} is defined with different values: {}; no copy decides the member's identity until one remains (an admitted member keeps its id, and what Bowline wrote into it is kept)",
        listed.join(", ")
    )
}

#[cfg(test)]
mod tests {
    //! The index against the rescan it replaces: every file read again and the result diffed
    //! against the last scan (the code before incremental reads, kept here as the reference).

    use proptest::prelude::*;

    use super::*;
    use crate::documents;

    /// A whole-directory scan as it was: files in order, the first copy of an object wins,
    /// refused edits keep the objects the file held in the previous scan.
    #[derive(Default)]
    struct Reference {
        current: BTreeMap<ObjectKey, (Object, Origin)>,
    }

    /// A rejection of the reference scan; copies of objects are decided once every file is
    /// read, because identity ClusterProperties conflict across files.
    enum Pending {
        Done(Rejection),
        Copy {
            origin: Origin,
            key: ObjectKey,
            first: Option<Origin>,
        },
    }

    impl Reference {
        fn scan(
            &mut self,
            index: &Index,
            files: &BTreeMap<FileName, Contents>,
        ) -> (Vec<Change>, Vec<Rejection>) {
            let mut next: BTreeMap<ObjectKey, (Object, Origin)> = BTreeMap::new();
            let mut pending = Vec::new();
            let mut copies: BTreeMap<ObjectKey, Vec<(String, Origin)>> = BTreeMap::new();
            let mut copy = |object: &Object, origin: &Origin| {
                if let Object::ClusterProperty(p) = object {
                    copies
                        .entry(object.key())
                        .or_default()
                        .push((p.value.clone(), origin.clone()));
                }
            };
            for (file, contents) in files {
                let at = |line, index| Origin {
                    file: file.clone(),
                    line,
                    index,
                };
                let documents = match contents {
                    Contents::Documents(documents) => documents.clone(),
                    Contents::Unreadable(e) => {
                        pending.push(Pending::Done(index.rejection(
                            &at(0, 0),
                            None,
                            RejectReason::ParseError,
                            format!("cannot read file: {e}"),
                        )));
                        for (object, origin) in self.keep_previous(file, |_| true, &mut next) {
                            copy(&object, &origin);
                        }
                        continue;
                    }
                };
                let mut refused_keys = BTreeSet::new();
                let mut unknown_broken = false;
                for doc in documents {
                    let origin = at(doc.line, doc.index);
                    match doc.result {
                        Ok(None) => {}
                        Ok(Some(object)) => {
                            let key = object.key();
                            copy(&object, &origin);
                            let first = next.get(&key).map(|(_, first)| first.clone());
                            if first.is_none() {
                                next.insert(key.clone(), (object, origin.clone()));
                            }
                            pending.push(Pending::Copy { origin, key, first });
                        }
                        Err(e) => {
                            let kept = e.key.as_ref().is_some_and(|k| {
                                self.current.get(k).is_some_and(|(_, o)| o.file == *file)
                            });
                            let message = if kept {
                                format!("{}; its last valid version is kept", e.message)
                            } else {
                                e.message
                            };
                            match &e.key {
                                Some(key) => {
                                    refused_keys.insert(key.clone());
                                }
                                None => unknown_broken = true,
                            }
                            pending.push(Pending::Done(
                                index.rejection(&origin, e.key, e.reason, message),
                            ));
                        }
                    }
                }
                let kept = self.keep_previous(
                    file,
                    |key| unknown_broken || refused_keys.contains(key),
                    &mut next,
                );
                for (object, origin) in kept {
                    copy(&object, &origin);
                }
            }
            let rejections = pending
                .into_iter()
                .filter_map(|p| match p {
                    Pending::Done(rejection) => Some(rejection),
                    Pending::Copy { origin, key, first } => {
                        let listed: Vec<(&str, &Origin)> = copies
                            .get(&key)
                            .into_iter()
                            .flatten()
                            .map(|(v, o)| (v.as_str(), o))
                            .collect();
                        let differ = listed.iter().any(|(v, _)| *v != listed[0].0);
                        if is_identity_property(&key) && differ {
                            let message = conflict_message(&key, &listed);
                            let reason = RejectReason::ConflictingClusterProperty;
                            Some(index.rejection(&origin, Some(key), reason, message))
                        } else {
                            let first = first?;
                            let message = format!(
                                "{key} is already defined at {}; this copy is ignored",
                                first.describe()
                            );
                            let reason = RejectReason::DuplicateObject;
                            Some(index.rejection(&origin, Some(key), reason, message))
                        }
                    }
                })
                .collect();
            let deleted = self
                .current
                .keys()
                .filter(|k| !next.contains_key(*k))
                .map(|k| Change::Delete(k.clone()));
            let applied = next
                .iter()
                .filter(|(k, (o, _))| self.current.get(*k).is_none_or(|(old, _)| old != o))
                .map(|(_, (o, _))| Change::Apply(o.clone()));
            let changes = deleted.chain(applied).collect();
            self.current = next;
            (changes, rejections)
        }

        /// Keeps a file's previous objects the filter names; returns those kept.
        fn keep_previous(
            &self,
            file: &FileName,
            keep: impl Fn(&ObjectKey) -> bool,
            next: &mut BTreeMap<ObjectKey, (Object, Origin)>,
        ) -> Vec<(Object, Origin)> {
            let mut kept = Vec::new();
            for (key, (object, origin)) in &self.current {
                if origin.file == *file && keep(key) && !next.contains_key(key) {
                    next.insert(key.clone(), (object.clone(), origin.clone()));
                    kept.push((object.clone(), origin.clone()));
                }
            }
            kept
        }
    }

    /// A document from a small pool: two Services in three valid versions, each also refused
    /// (port 0, the object named), a document too broken to name its object, and the id
    /// ClusterProperty with one of two values (copies in several files conflict).
    fn document(n: u8) -> String {
        let name = ["x", "y"][usize::from(n % 2)];
        if n >= 200 {
            return format!(
                "apiVersion: about.k8s.io/v1alpha1\nkind: ClusterProperty\nmetadata: {{name: cluster.clusterset.k8s.io}}\nspec: {{value: {}}}\n",
                ["east", "west"][usize::from(n % 2)]
            );
        }
        match n / 2 % 5 {
            0..3 => format!(
                "apiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: demo}}\nspec: {{ports: [{{port: {}}}]}}\n",
                80 + u16::from(n / 2 % 5)
            ),
            3 => format!(
                "apiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: demo}}\nspec: {{ports: [{{port: 0}}]}}\n"
            ),
            _ => "kind: [unclosed\n".to_string(),
        }
    }

    /// A file's new contents: gone, unreadable, or some documents.
    fn contents() -> impl Strategy<Value = Option<Contents>> {
        prop_oneof![
            1 => Just(None),
            1 => Just(Some(Contents::Unreadable("permission denied".into()))),
            6 => prop::collection::vec(any::<u8>(), 0..4).prop_map(|docs| {
                let text: Vec<String> = docs.into_iter().map(document).collect();
                Some(Contents::Documents(documents::parse(&text.join("---\n"))))
            }),
        ]
    }

    fn steps() -> impl Strategy<Value = Vec<Vec<(usize, Option<Contents>)>>> {
        prop::collection::vec(prop::collection::vec((0..3usize, contents()), 1..3), 1..12)
    }

    proptest! {
        /// After any sequence of edits, updating only the edited files gives the changes and
        /// objects of a full rescan, and its rejections once a rescan settles (a rescan said a
        /// refused object "is kept" one scan late when an earlier file took it).
        #[test]
        fn updates_equal_full_rescans(steps in steps()) {
            let names: Vec<FileName> = ["a.yaml", "b.yaml", "sub/c.yaml"]
                .iter()
                .map(|n| Arc::from(Path::new(n)))
                .collect();
            let mut index = Index::new(MemberName::new("east"));
            let mut reference = Reference::default();
            let mut files: BTreeMap<FileName, Contents> = BTreeMap::new();
            for step in steps {
                let mut updates = BTreeMap::new();
                for (file, contents) in step {
                    let name = names[file].clone();
                    match &contents {
                        Some(c) => files.insert(name.clone(), c.clone()),
                        None => files.remove(&name),
                    };
                    updates.insert(name, contents);
                }
                let changes = index.update(updates);
                let (expected, _) = reference.scan(&index, &files);
                prop_assert_eq!(&changes, &expected);
                let (settled, rejections) = reference.scan(&index, &files);
                prop_assert!(settled.is_empty(), "a second rescan changes nothing");
                prop_assert_eq!(index.rejections(), rejections);
                let objects: Vec<Object> =
                    reference.current.values().map(|(o, _)| o.clone()).collect();
                prop_assert_eq!(index.objects(), objects);
            }
        }
    }
}
