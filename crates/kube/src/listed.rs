//! An object as the API server sent it: its JSON text, with the few metadata fields the
//! watcher and the writer's keys need.
//!
//! Lists come a page at a time (500 objects for the watches, 250 for the writer's sweeps),
//! and a page is parsed whole before its first object is read. As `serde_json::Value` trees
//! (what `DynamicObject` holds) an EndpointSlice takes about 2.2 KB per endpoint: a map, a
//! key string and a value per field. A page of 100-endpoint slices held that way is about
//! 110 MB, and every member's watches and sweeps list at once. As text it is a tenth of
//! that (about 240 bytes per endpoint); each object is parsed when it is read, one at a time.
//!
//! The text is taken with `serde_json`'s `RawValue`, which reads it straight from the
//! response. That needs the object after the event's `type` in a watch event, which is how
//! the API server writes them (`{"type":"ADDED","object":{...}}`).

use std::borrow::Cow;

use kube::{
    api::{ApiResource, TypeMeta},
    core::{DynamicResourceScope, ObjectMeta},
};
use serde::{Deserialize, Deserializer, de::Error as _};
use serde_json::{Value, value::RawValue};

/// One listed or watched object, as text.
#[derive(Clone, Debug)]
pub(crate) struct Listed {
    /// Name, namespace, resourceVersion and labels: what the watcher (resuming from the last
    /// resourceVersion) and the writer's keys read without parsing the object.
    metadata: ObjectMeta,
    text: Box<RawValue>,
}

/// The part of an object's metadata kept beside its text.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Head {
    #[serde(default)]
    metadata: HeadMeta,
}

#[derive(Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct HeadMeta {
    name: Option<String>,
    namespace: Option<String>,
    resource_version: Option<String>,
    labels: Option<std::collections::BTreeMap<String, String>>,
}

impl<'de> Deserialize<'de> for Listed {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = Box::<RawValue>::deserialize(deserializer)?;
        let head: Head = serde_json::from_str(text.get()).map_err(D::Error::custom)?;
        let meta = head.metadata;
        Ok(Self {
            metadata: ObjectMeta {
                name: meta.name,
                namespace: meta.namespace,
                resource_version: meta.resource_version,
                labels: meta.labels,
                ..ObjectMeta::default()
            },
            text,
        })
    }
}

impl Listed {
    /// The object's metadata (name, namespace, resourceVersion and labels only).
    pub(crate) fn metadata(&self) -> &ObjectMeta {
        &self.metadata
    }

    /// The object's JSON text, as sent.
    pub(crate) fn text(&self) -> &str {
        self.text.get()
    }

    /// The object, parsed, with `types` as its `apiVersion` and `kind` when given (list
    /// items come without them).
    pub(crate) fn value(&self, types: Option<&TypeMeta>) -> Value {
        let mut value: Value = serde_json::from_str(self.text.get()).unwrap_or_default();
        if let (Some(types), Some(object)) = (types, value.as_object_mut()) {
            object.insert("apiVersion".into(), types.api_version.clone().into());
            object.insert("kind".into(), types.kind.clone().into());
        }
        value
    }
}

impl kube::Resource for Listed {
    type DynamicType = ApiResource;
    type Scope = DynamicResourceScope;

    fn kind(dt: &ApiResource) -> Cow<'_, str> {
        dt.kind.as_str().into()
    }

    fn group(dt: &ApiResource) -> Cow<'_, str> {
        dt.group.as_str().into()
    }

    fn version(dt: &ApiResource) -> Cow<'_, str> {
        dt.version.as_str().into()
    }

    fn api_version(dt: &ApiResource) -> Cow<'_, str> {
        dt.api_version.as_str().into()
    }

    fn plural(dt: &ApiResource) -> Cow<'_, str> {
        dt.plural.as_str().into()
    }

    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }

    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

#[cfg(test)]
mod tests {
    use kube::core::{ObjectList, WatchEvent};

    use super::*;

    const SLICE: &str = r#"{"metadata":{"name":"a","namespace":"ns","resourceVersion":"7","labels":{"k":"v"},"managedFields":[{"manager":"x"}]},"addressType":"IPv4","endpoints":[{"addresses":["10.0.0.1"]}]}"#;

    #[test]
    fn a_list_page_is_read_as_each_object_s_text() {
        let page = format!(
            r#"{{"apiVersion":"discovery.k8s.io/v1","kind":"EndpointSliceList","metadata":{{"resourceVersion":"9"}},"items":[{SLICE}]}}"#
        );
        let list: ObjectList<Listed> = serde_json::from_str(&page).unwrap();
        assert_eq!(list.metadata.resource_version.as_deref(), Some("9"));
        let item = &list.items[0];
        assert_eq!(item.text(), SLICE, "the object's own text");
        let meta = item.metadata();
        assert_eq!(
            (meta.name.as_deref(), meta.namespace.as_deref()),
            (Some("a"), Some("ns"))
        );
        assert_eq!(meta.resource_version.as_deref(), Some("7"));
        assert_eq!(meta.labels.as_ref().unwrap()["k"], "v");
        assert!(meta.managed_fields.is_none(), "only what is needed is kept");
        let types = TypeMeta {
            api_version: "discovery.k8s.io/v1".into(),
            kind: "EndpointSlice".into(),
        };
        let value = item.value(Some(&types));
        assert_eq!(value["kind"], "EndpointSlice");
        assert_eq!(value["apiVersion"], "discovery.k8s.io/v1");
        assert_eq!(value["endpoints"][0]["addresses"][0], "10.0.0.1");
    }

    #[test]
    fn a_watch_event_is_read_as_the_api_server_writes_it() {
        let line = format!(r#"{{"type":"MODIFIED","object":{SLICE}}}"#);
        let WatchEvent::Modified(item) = serde_json::from_str::<WatchEvent<Listed>>(&line).unwrap()
        else {
            panic!("a MODIFIED event");
        };
        assert_eq!(item.text(), SLICE);
        assert_eq!(item.metadata().resource_version.as_deref(), Some("7"));
    }
}
