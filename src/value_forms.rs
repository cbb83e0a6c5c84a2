//! The JSON forms of values that are not JSON themselves, as the guest's driver writes them
//! (`src/sandbox/values.py`): a `result` or a displayed value is either plain JSON or one of
//! these objects, told apart by `type`. The host passes them through untouched; these types
//! exist to describe them in the OpenAPI document and the MCP tool's output schema, and a
//! test keeps them true to what the driver writes.

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::Deserialize;
use serde_json::Value;

/// A value with no JSON type of its own, as an object whose `type` says which form it is.
/// Non-finite floats anywhere are the strings "nan", "inf", "-inf"; in a table, what pandas
/// counts as missing (None, NaN, NaT, NA) is null.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
pub enum TypedValue {
    /// A numpy array: `data` is nested lists of its elements (dates as ISO 8601 strings,
    /// durations as seconds), or, when `truncated`, of the first `preview_shape` of them.
    Ndarray {
        dtype: String,
        shape: Vec<u64>,
        #[schemars(schema_with = "any_json")]
        data: Value,
        truncated: bool,
        #[serde(default)]
        preview_shape: Option<Vec<u64>>,
    },
    /// A pandas DataFrame, or a Series as a one-column frame (`series: true`), in split
    /// orientation: `data` is rows of cells aligned with `columns`. At most 100 rows and
    /// 50 columns (fewer when the output limit is small); `shape` keeps the totals.
    /// Timestamps are ISO 8601 strings, durations ISO 8601 durations; MultiIndex labels
    /// are lists.
    Dataframe {
        #[schemars(schema_with = "list")]
        columns: Vec<Value>,
        #[schemars(schema_with = "list")]
        index: Vec<Value>,
        #[schemars(schema_with = "rows")]
        data: Vec<Vec<Value>>,
        dtypes: Vec<String>,
        #[schemars(schema_with = "list")]
        index_names: Vec<Value>,
        shape: [u64; 2],
        truncated: bool,
        #[serde(default)]
        series: bool,
    },
    /// A pandas Index: its labels (the first 1000).
    Index {
        dtype: String,
        #[schemars(schema_with = "list")]
        names: Vec<Value>,
        length: u64,
        #[schemars(schema_with = "list")]
        data: Vec<Value>,
        truncated: bool,
    },
    Tuple {
        #[schemars(schema_with = "list")]
        data: Vec<Value>,
    },
    /// Sorted when its items can be.
    Set {
        #[schemars(schema_with = "list")]
        data: Vec<Value>,
    },
    Frozenset {
        #[schemars(schema_with = "list")]
        data: Vec<Value>,
    },
    /// A dict with keys that are not all strings, as [key, value] pairs in order.
    Dict {
        #[schemars(schema_with = "rows")]
        data: Vec<[Value; 2]>,
    },
    /// Base64 (standard alphabet, padded).
    Bytes {
        data: String,
    },
    Bytearray {
        data: String,
    },
    /// An integer beyond 64 bits: its decimal digits, or `hex` past Python's digit limit.
    Int {
        #[serde(default)]
        data: Option<String>,
        #[serde(default)]
        hex: Option<String>,
    },
    Complex {
        #[schemars(schema_with = "float")]
        real: Value,
        #[schemars(schema_with = "float")]
        imag: Value,
    },
    /// `str(Decimal)`: exact.
    Decimal {
        data: String,
    },
    /// In lowest terms.
    Fraction {
        #[schemars(schema_with = "integer")]
        numerator: Value,
        #[schemars(schema_with = "integer")]
        denominator: Value,
    },
    /// ISO 8601, with the offset when it has one (`isoformat()`; numpy's own form for
    /// datetime64).
    Datetime {
        data: String,
    },
    Date {
        data: String,
    },
    Time {
        data: String,
    },
    /// In seconds.
    Timedelta {
        #[schemars(schema_with = "float")]
        seconds: Value,
    },
    /// Inside a container, something with no JSON form: its type and repr().
    Repr {
        value_type: String,
        data: String,
    },
}

/// The schema of a `result` or a displayed value: plain JSON, or a [`TypedValue`] (at the
/// top level, a value with no form at all is its repr() as a string).
pub fn schema(generator: &mut SchemaGenerator) -> Schema {
    let typed = generator.subschema_for::<TypedValue>();
    json_schema!({
        "anyOf": [
            typed,
            {
                "description": "JSON as it is: null, a boolean, a number, a string, a list, \
                                or an object with string keys (whose items may be typed \
                                values)",
                "type": ["null", "boolean", "number", "string", "array", "object"]
            }
        ]
    })
}

/// Any JSON value (spelled out: strict schema checkers refuse a bare `true`).
pub fn any_json(_: &mut SchemaGenerator) -> Schema {
    json_schema!({ "type": ["null", "boolean", "number", "string", "array", "object"] })
}

fn list(generator: &mut SchemaGenerator) -> Schema {
    json_schema!({ "type": "array", "items": any_json(generator) })
}

fn rows(generator: &mut SchemaGenerator) -> Schema {
    json_schema!({ "type": "array", "items": list(generator) })
}

/// A float: a number, or "nan", "inf", "-inf".
fn float(_: &mut SchemaGenerator) -> Schema {
    json_schema!({ "anyOf": [{ "type": "number" }, { "enum": ["nan", "inf", "-inf"] }] })
}

/// An integer: a number within 64 bits, or the `int` form beyond.
fn integer(_: &mut SchemaGenerator) -> Schema {
    json_schema!({ "anyOf": [{ "type": "integer" }, { "type": "object" }] })
}

#[cfg(test)]
mod tests {
    use super::TypedValue;

    /// What the driver writes for each form (the integration tests check the driver
    /// writes exactly these), read back with unknown fields refused.
    #[test]
    fn the_forms_the_driver_writes_are_described() {
        for sample in [
            r#"{"type": "ndarray", "dtype": "int64", "shape": [2, 2], "data": [[1, 2], [3, 4]], "truncated": false}"#,
            r#"{"type": "ndarray", "dtype": "int64", "shape": [9], "data": [0], "truncated": true, "preview_shape": [1]}"#,
            r#"{"type": "dataframe", "columns": ["v"], "index": [["x", 1]], "data": [[1]], "dtypes": ["int64"], "index_names": ["a", "b"], "shape": [1, 1], "truncated": false, "series": true}"#,
            r#"{"type": "index", "dtype": "int64", "names": ["n"], "length": 2, "data": [3, 1], "truncated": false}"#,
            r#"{"type": "tuple", "data": [1, 2]}"#,
            r#"{"type": "set", "data": [1]}"#,
            r#"{"type": "frozenset", "data": []}"#,
            r#"{"type": "dict", "data": [[1, "a"]]}"#,
            r#"{"type": "bytes", "data": "AGFi"}"#,
            r#"{"type": "bytearray", "data": "aGk="}"#,
            r#"{"type": "int", "data": "1267650600228229401496703205376"}"#,
            r#"{"type": "int", "hex": "0x1"}"#,
            r#"{"type": "complex", "real": 1.0, "imag": "nan"}"#,
            r#"{"type": "decimal", "data": "1.10"}"#,
            r#"{"type": "fraction", "numerator": 1, "denominator": 3}"#,
            r#"{"type": "datetime", "data": "2024-02-29T13:05:07.000250-05:00"}"#,
            r#"{"type": "date", "data": "2024-01-02"}"#,
            r#"{"type": "time", "data": "23:59:01"}"#,
            r#"{"type": "timedelta", "seconds": 86400.000005}"#,
            r#"{"type": "repr", "value_type": "__main__.P", "data": "P!"}"#,
        ] {
            serde_json::from_str::<TypedValue>(sample).unwrap_or_else(|e| panic!("{sample}: {e}"));
        }
        assert!(
            serde_json::from_str::<TypedValue>(r#"{"type": "tuple", "data": [], "x": 1}"#).is_err()
        );
    }
}
