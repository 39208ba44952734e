//! Builds a JSON value from a YAML body within a budget, so that anchors and aliases cannot
//! expand a small body into gigabytes ("billion laughs"). Every node costs one unit and
//! every byte of a string or key one more; when the budget runs out the build stops with an
//! error (the caller sees the budget at zero and names the cause).

use std::{cell::Cell, fmt};

use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

/// A seed that deserializes one value, spending from the shared budget.
pub struct Bounded<'a>(pub &'a Cell<usize>);

impl Bounded<'_> {
    fn spend<E: de::Error>(&self, units: usize) -> Result<(), E> {
        let left = self.0.get();
        if units > left {
            self.0.set(0);
            return Err(E::custom("request body expands beyond its budget"));
        }
        self.0.set(left - units);
        Ok(())
    }
}

impl<'de> DeserializeSeed<'de> for Bounded<'_> {
    type Value = Value;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Bounded<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a YAML value")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Value, E> {
        self.spend(1)?;
        Ok(Value::Bool(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Value, E> {
        self.spend(1)?;
        Ok(Value::Number(v.into()))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Value, E> {
        self.spend(1)?;
        Ok(Value::Number(v.into()))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        self.spend(1)?;
        Ok(Number::from_f64(v).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Value, E> {
        self.spend(1 + v.len())?;
        Ok(Value::String(v.to_string()))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Value, E> {
        self.spend(1 + v.len())?;
        Ok(Value::String(v))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        self.spend(1)?;
        Ok(Value::Null)
    }

    fn visit_none<E: de::Error>(self) -> Result<Value, E> {
        self.visit_unit()
    }

    fn visit_some<D: de::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        self.spend(1)?;
        let mut out = Vec::new();
        while let Some(v) = seq.next_element_seed(Bounded(self.0))? {
            out.push(v);
        }
        Ok(Value::Array(out))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        self.spend(1)?;
        let mut out = Map::new();
        while let Some(k) = map.next_key_seed(Bounded(self.0))? {
            let key = match k {
                Value::String(s) => s,
                Value::Null => String::new(),
                other => other.to_string(),
            };
            let v = map.next_value_seed(Bounded(self.0))?;
            out.insert(key, v);
        }
        Ok(Value::Object(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str, budget: usize) -> (Result<Value, serde_yaml::Error>, usize) {
        let b = Cell::new(budget);
        let r = Bounded(&b).deserialize(serde_yaml::Deserializer::from_str(text));
        (r, b.get())
    }

    #[test]
    fn plain_yaml_builds_the_same_value_as_serde_yaml() {
        let text = "a: 1\nb: [x, 'y', 2.5, true, ~]\nc:\n  d: -3\n  1: e\n";
        let (r, left) = parse(text, 2 * text.len() + 64);
        let want: Value = serde_yaml::from_str(text).unwrap();
        assert_eq!(r.unwrap(), want);
        assert!(left > 0);
    }

    #[test]
    fn aliases_that_multiply_content_run_out_of_budget() {
        let text = "a: &a [1,1,1,1,1,1,1,1,1,1]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a,*a]\nc: [*b,*b,*b,*b,*b,*b,*b,*b,*b,*b]\n";
        let (r, left) = parse(text, 2 * text.len() + 64);
        assert!(r.is_err());
        assert_eq!(left, 0);
    }
}
