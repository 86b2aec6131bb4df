//! One object Bowline writes, held as its compact JSON text or, for an imported
//! EndpointSlice, as the endpoints it is rendered from.
//!
//! The MCS outcome holds every object every member must hold: at 100,000 endpoints that is
//! mostly imported EndpointSlices. As parsed `serde_json::Value`s they took about 2.5 KB per
//! endpoint (a map node, a string and a vector per field); as text they take about a tenth
//! of that; imported slices, which share their endpoints with the registry's view, take
//! nothing per endpoint. Renderings are deterministic, so two renderings are equal exactly
//! when their texts are; the fields are parsed only by the code that needs them (a writer
//! putting the object into YAML, the controller reading back a condition's transition time).

use std::{borrow::Cow, fmt};

use serde::Serialize;
use serde_json::Value;

use crate::render::ImportedSlice;

/// An object Bowline writes: its compact JSON text, or for an imported EndpointSlice what
/// the text is rendered from.
#[derive(Clone)]
pub struct Rendered(Form);

#[derive(Clone)]
enum Form {
    Text(Box<str>),
    Slice(Box<ImportedSlice>),
}

impl Rendered {
    /// Renders `object`.
    pub fn new(object: &Value) -> Self {
        Self::serialize(object)
    }

    /// Renders a serializable object straight to text, without a `Value` tree. Its maps must
    /// print their keys sorted, as a `Value`'s do, so that equal objects render equally.
    pub fn serialize(object: &impl Serialize) -> Self {
        let text = serde_json::to_string(object).expect("Bowline's objects always serialize");
        Self(Form::Text(text.into_boxed_str()))
    }

    /// The object's JSON text (an imported slice's is rendered on each call).
    pub fn json(&self) -> Cow<'_, str> {
        match &self.0 {
            Form::Text(text) => Cow::Borrowed(text),
            Form::Slice(slice) => Cow::Owned(slice.text()),
        }
    }

    /// The object, parsed.
    pub fn to_value(&self) -> Value {
        match &self.0 {
            Form::Text(text) => {
                serde_json::from_str(text).expect("a rendered object is valid JSON")
            }
            Form::Slice(slice) => slice.value(),
        }
    }
}

impl From<ImportedSlice> for Rendered {
    fn from(slice: ImportedSlice) -> Self {
        Self(Form::Slice(Box::new(slice)))
    }
}

impl From<Value> for Rendered {
    fn from(object: Value) -> Self {
        Self::new(&object)
    }
}

impl From<&Value> for Rendered {
    fn from(object: &Value) -> Self {
        Self::new(object)
    }
}

impl PartialEq for Rendered {
    fn eq(&self, other: &Self) -> bool {
        match (&self.0, &other.0) {
            (Form::Text(a), Form::Text(b)) => a == b,
            (Form::Slice(a), Form::Slice(b)) => a == b,
            _ => self.json() == other.json(),
        }
    }
}

impl Eq for Rendered {}

impl fmt::Debug for Rendered {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.json())
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_rendering_round_trips_and_compares_by_its_text() {
        let object = json!({"kind": "EndpointSlice", "endpoints": [{"addresses": ["10.0.0.1"]}]});
        let rendered = Rendered::new(&object);
        assert_eq!(rendered.to_value(), object);
        assert_eq!(rendered, Rendered::from(object.clone()));
        assert_ne!(rendered, Rendered::new(&json!({"kind": "EndpointSlice"})));
        assert_eq!(
            rendered.json(),
            serde_json::to_string(&object).unwrap(),
            "the object's own text"
        );
        assert!(
            !rendered.json().contains(' '),
            "compact: {}",
            rendered.json()
        );
    }
}
