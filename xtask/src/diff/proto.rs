//! Proto descriptors compared element by element (fully qualified names, field
//! numbers), with `buf breaking`'s WIRE-level rules for the wire verdict and
//! prost's code shape for the Rust verdict.
//!
//! Rust shape of prost output, which decides the `rust` column:
//! - a message is a struct with only pub fields and no `#[non_exhaustive]`, so a
//!   new field breaks struct literals (cargo semver-checks:
//!   `constructible_struct_adds_field`); a removed or renamed field breaks
//!   uses of it; a changed Rust type (see [`rust_type`]) breaks uses of it;
//! - an enum is a plain exhaustive Rust enum: a new value breaks `match`
//!   (`enum_variant_added`); enum fields are `i32` with typed accessors, so
//!   the accessor's type is part of the field's Rust type;
//! - a oneof is an exhaustive enum: a new member breaks `match`;
//! - a new message, enum or RPC adds items (or a provided trait method) only;
//! - a new field number alone changes an attribute, not the API.

use std::collections::{BTreeMap, BTreeSet};

use prost_types::field_descriptor_proto::{Label, Type};
use prost_types::{DescriptorProto, EnumDescriptorProto, FieldDescriptorProto, FileDescriptorSet};

use super::{Area, Change, Kind, Rust, Severity};

/// What to compare besides wire facts.
#[derive(Clone, Copy, Debug)]
pub struct Options {
    /// Report comment changes (severity none). Off when comparing with upstream,
    /// whose comments are not ours by design.
    pub comments: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Field {
    name: String,
    number: i32,
    ty: Type,
    type_name: String,
    repeated: bool,
    proto3_optional: bool,
    oneof: Option<String>,
    deprecated: bool,
    /// `map<K, V>` when the field is a map.
    map: Option<(String, String)>,
}

impl Field {
    /// The type as written in a .proto file.
    fn proto_type(&self) -> String {
        if let Some((k, v)) = &self.map {
            return format!("map<{k}, {v}>");
        }
        let base = scalar_or_name(self.ty, &self.type_name);
        if self.repeated {
            format!("repeated {base}")
        } else if self.proto3_optional {
            format!("optional {base}")
        } else {
            base
        }
    }
}

fn scalar_or_name(ty: Type, type_name: &str) -> String {
    match ty {
        Type::Message | Type::Enum | Type::Group => type_name.trim_start_matches('.').to_owned(),
        other => other.as_str_name().trim_start_matches("TYPE_").to_lowercase(),
    }
}

/// The Rust type prost gives a field (and the accessor type of enum fields).
fn rust_type(f: &Field) -> String {
    if let Some((k, v)) = &f.map {
        return format!("BTreeMap<{k}, {v}>");
    }
    let base = match f.ty {
        Type::Int32 | Type::Sint32 | Type::Sfixed32 => "i32".to_owned(),
        Type::Int64 | Type::Sint64 | Type::Sfixed64 => "i64".to_owned(),
        Type::Uint32 | Type::Fixed32 => "u32".to_owned(),
        Type::Uint64 | Type::Fixed64 => "u64".to_owned(),
        Type::Float => "f32".to_owned(),
        Type::Double => "f64".to_owned(),
        Type::Bool => "bool".to_owned(),
        Type::String => "String".to_owned(),
        Type::Bytes => "Vec<u8>".to_owned(),
        Type::Enum => format!("i32 as {}", f.type_name.trim_start_matches('.')),
        Type::Message | Type::Group => f.type_name.trim_start_matches('.').to_owned(),
    };
    let is_message = matches!(f.ty, Type::Message | Type::Group);
    let inner = if f.repeated {
        format!("Vec<{base}>")
    } else if f.proto3_optional || (is_message && f.oneof.is_none()) {
        format!("Option<{base}>")
    } else {
        base
    };
    match &f.oneof {
        Some(o) => format!("oneof {o}: {inner}"),
        None => inner,
    }
}

/// buf's FIELD_WIRE_COMPATIBLE_TYPE groups: types within one group decode each other's bytes.
fn wire_group(ty: Type) -> u8 {
    match ty {
        Type::Int32 | Type::Uint32 | Type::Int64 | Type::Uint64 | Type::Bool | Type::Enum => 1,
        Type::Sint32 | Type::Sint64 => 2,
        Type::Fixed32 | Type::Sfixed32 => 3,
        Type::Fixed64 | Type::Sfixed64 => 4,
        Type::String | Type::Bytes => 5,
        Type::Float => 6,
        Type::Double => 7,
        Type::Message => 8,
        Type::Group => 9,
    }
}

#[derive(Debug, Default)]
struct Message {
    fields: BTreeMap<i32, Field>,
}

#[derive(Debug, Default)]
struct Enum {
    /// number → names (aliases allowed).
    values: BTreeMap<i32, BTreeSet<String>>,
}

#[derive(Debug)]
struct Method {
    input: String,
    output: String,
    client_streaming: bool,
    server_streaming: bool,
}

#[derive(Debug, Default)]
struct Index {
    messages: BTreeMap<String, Message>,
    enums: BTreeMap<String, Enum>,
    services: BTreeMap<String, BTreeMap<String, Method>>,
    /// element → its comments.
    comments: BTreeMap<String, String>,
}

/// Files of these prefixes are the well-known types, not ours.
fn is_ours(file: &str) -> bool {
    !file.starts_with("google/protobuf/")
}

fn index(fds: &FileDescriptorSet) -> Index {
    let mut ix = Index::default();
    for file in fds.file.iter().filter(|f| is_ours(f.name())) {
        let package = file.package();
        let prefix = if package.is_empty() {
            String::new()
        } else {
            format!("{package}.")
        };
        // Location path → element name, for comments.
        let mut names: BTreeMap<Vec<i32>, String> = BTreeMap::new();
        for (i, m) in file.message_type.iter().enumerate() {
            index_message(&mut ix, &mut names, &prefix, m, vec![4, i as i32]);
        }
        for (i, e) in file.enum_type.iter().enumerate() {
            index_enum(&mut ix, &mut names, &prefix, e, vec![5, i as i32]);
        }
        for (i, s) in file.service.iter().enumerate() {
            let sname = format!("{prefix}{}", s.name());
            names.insert(vec![6, i as i32], sname.clone());
            let methods = ix.services.entry(sname.clone()).or_default();
            for (j, m) in s.method.iter().enumerate() {
                names.insert(vec![6, i as i32, 2, j as i32], format!("{sname}.{}", m.name()));
                methods.insert(
                    m.name().to_owned(),
                    Method {
                        input: m.input_type().trim_start_matches('.').to_owned(),
                        output: m.output_type().trim_start_matches('.').to_owned(),
                        client_streaming: m.client_streaming(),
                        server_streaming: m.server_streaming(),
                    },
                );
            }
        }
        if let Some(info) = &file.source_code_info {
            for loc in &info.location {
                let Some(name) = names.get(&loc.path) else { continue };
                let mut text = String::new();
                for d in &loc.leading_detached_comments {
                    text.push_str(d);
                }
                text.push_str(loc.leading_comments());
                text.push_str(loc.trailing_comments());
                if !text.trim().is_empty() {
                    ix.comments.entry(name.clone()).or_default().push_str(&text);
                }
            }
        }
    }
    ix
}

fn index_message(
    ix: &mut Index,
    names: &mut BTreeMap<Vec<i32>, String>,
    prefix: &str,
    m: &DescriptorProto,
    path: Vec<i32>,
) {
    let full = format!("{prefix}{}", m.name());
    if m.options.as_ref().is_some_and(|o| o.map_entry()) {
        return; // described by the map field that uses it
    }
    names.insert(path.clone(), full.clone());
    let maps: BTreeMap<String, (String, String)> = m
        .nested_type
        .iter()
        .filter(|n| n.options.as_ref().is_some_and(|o| o.map_entry()))
        .map(|n| {
            let kv = |f: Option<&FieldDescriptorProto>| {
                f.map(|f| scalar_or_name(f.r#type(), f.type_name())).unwrap_or_default()
            };
            (
                format!(".{full}.{}", n.name()),
                (kv(n.field.first()), kv(n.field.get(1))),
            )
        })
        .collect();
    let mut msg = Message::default();
    for (j, f) in m.field.iter().enumerate() {
        let mut p = path.clone();
        p.extend([2, j as i32]);
        names.insert(p, format!("{full}.{}", f.name()));
        let oneof = f
            .oneof_index
            .filter(|_| !f.proto3_optional())
            .and_then(|i| m.oneof_decl.get(i as usize))
            .map(|o| o.name().to_owned());
        let map = maps.get(f.type_name()).cloned();
        msg.fields.insert(
            f.number(),
            Field {
                name: f.name().to_owned(),
                number: f.number(),
                ty: f.r#type(),
                type_name: f.type_name().to_owned(),
                repeated: f.label() == Label::Repeated && map.is_none(),
                proto3_optional: f.proto3_optional(),
                oneof,
                deprecated: f.options.as_ref().is_some_and(|o| o.deprecated()),
                map,
            },
        );
    }
    ix.messages.insert(full.clone(), msg);
    let nested_prefix = format!("{full}.");
    for (k, n) in m.nested_type.iter().enumerate() {
        let mut p = path.clone();
        p.extend([3, k as i32]);
        index_message(ix, names, &nested_prefix, n, p);
    }
    for (k, e) in m.enum_type.iter().enumerate() {
        let mut p = path.clone();
        p.extend([4, k as i32]);
        index_enum(ix, names, &nested_prefix, e, p);
    }
}

fn index_enum(
    ix: &mut Index,
    names: &mut BTreeMap<Vec<i32>, String>,
    prefix: &str,
    e: &EnumDescriptorProto,
    path: Vec<i32>,
) {
    let full = format!("{prefix}{}", e.name());
    names.insert(path.clone(), full.clone());
    let mut en = Enum::default();
    for (j, v) in e.value.iter().enumerate() {
        let mut p = path.clone();
        p.extend([2, j as i32]);
        names.insert(p, format!("{full}.{}", v.name()));
        en.values.entry(v.number()).or_default().insert(v.name().to_owned());
    }
    ix.enums.insert(full, en);
}

/// Every difference from `base` to `current`.
pub fn diff(base: &FileDescriptorSet, current: &FileDescriptorSet, opts: Options) -> Vec<Change> {
    let (b, c) = (index(base), index(current));
    let mut out = Vec::new();
    let mut push = |kind, sev, rust, path: String, detail: String| {
        out.push(Change::new(Area::Proto, kind, sev, rust, path, detail));
    };
    use Kind::*;

    // Messages and their fields.
    for (name, bm) in &b.messages {
        let Some(cm) = c.messages.get(name) else {
            push(
                Removed,
                Severity::Breaking,
                Rust::Breaking,
                name.clone(),
                "message removed".into(),
            );
            continue;
        };
        let cur_by_name: BTreeMap<&str, &Field> = cm.fields.values().map(|f| (f.name.as_str(), f)).collect();
        let base_by_name: BTreeMap<&str, &Field> = bm.fields.values().map(|f| (f.name.as_str(), f)).collect();
        for (num, bf) in &bm.fields {
            let path = format!("{name}.{}", bf.name);
            match cm.fields.get(num) {
                None => match cur_by_name.get(bf.name.as_str()) {
                    Some(cf) if !bm.fields.contains_key(&cf.number) || bm.fields[&cf.number].name != cf.name => {
                        let rust = if rust_type(bf) == rust_type(cf) {
                            Rust::None
                        } else {
                            Rust::Breaking
                        };
                        push(
                            Changed,
                            Severity::Breaking,
                            rust,
                            path,
                            format!("field renumbered {num} → {}", cf.number),
                        );
                    }
                    _ => push(
                        Removed,
                        Severity::Breaking,
                        Rust::Breaking,
                        path,
                        format!("field {num} removed"),
                    ),
                },
                Some(cf) => compare_field(name, bf, cf, &mut push),
            }
        }
        for (num, cf) in &cm.fields {
            if bm.fields.contains_key(num) {
                continue;
            }
            if base_by_name
                .get(cf.name.as_str())
                .is_some_and(|bf| !cm.fields.contains_key(&bf.number))
            {
                continue; // reported as renumbered
            }
            let detail = match &cf.oneof {
                Some(o) => format!("field {num} ({}) added to oneof {o}", cf.proto_type()),
                None => format!("field {num} ({}) added", cf.proto_type()),
            };
            push(
                Added,
                Severity::Additive,
                Rust::Breaking,
                format!("{name}.{}", cf.name),
                detail,
            );
        }
    }
    for name in c.messages.keys().filter(|n| !b.messages.contains_key(*n)) {
        push(
            Added,
            Severity::Additive,
            Rust::Additive,
            name.clone(),
            "message added".into(),
        );
    }

    // Enums.
    for (name, be) in &b.enums {
        let Some(ce) = c.enums.get(name) else {
            push(
                Removed,
                Severity::Breaking,
                Rust::Breaking,
                name.clone(),
                "enum removed".into(),
            );
            continue;
        };
        let number_of = |e: &Enum, value: &str| e.values.iter().find(|(_, ns)| ns.contains(value)).map(|(n, _)| *n);
        for (num, bnames) in &be.values {
            match ce.values.get(num) {
                None => {
                    for bn in bnames {
                        let path = format!("{name}.{bn}");
                        match number_of(ce, bn) {
                            Some(cn) => push(
                                Changed,
                                Severity::Breaking,
                                Rust::Breaking,
                                path,
                                format!("enum value renumbered {num} → {cn}"),
                            ),
                            None => push(
                                Removed,
                                Severity::Breaking,
                                Rust::Breaking,
                                path,
                                format!("enum value {num} removed"),
                            ),
                        }
                    }
                }
                Some(cnames) if cnames != bnames => {
                    let (old, new) = (join(bnames), join(cnames));
                    push(
                        Changed,
                        Severity::Compatible,
                        Rust::Breaking,
                        format!("{name}.{new}"),
                        format!("enum value {num} renamed from {old}"),
                    );
                }
                Some(_) => {}
            }
        }
        for (num, cnames) in &ce.values {
            if be.values.contains_key(num) {
                continue;
            }
            for cn in cnames {
                if number_of(be, cn).is_none() {
                    push(
                        Added,
                        Severity::Additive,
                        Rust::Breaking,
                        format!("{name}.{cn}"),
                        format!("enum value {num} added"),
                    );
                }
            }
        }
    }
    for name in c.enums.keys().filter(|n| !b.enums.contains_key(*n)) {
        push(
            Added,
            Severity::Additive,
            Rust::Additive,
            name.clone(),
            "enum added".into(),
        );
    }

    // Services and RPCs.
    for (name, bs) in &b.services {
        let Some(cs) = c.services.get(name) else {
            push(
                Removed,
                Severity::Breaking,
                Rust::Breaking,
                name.clone(),
                "service removed".into(),
            );
            continue;
        };
        for (m, bm) in bs {
            let path = format!("{name}.{m}");
            let Some(cm) = cs.get(m) else {
                push(Removed, Severity::Breaking, Rust::Breaking, path, "RPC removed".into());
                continue;
            };
            if bm.input != cm.input {
                push(
                    Changed,
                    Severity::Breaking,
                    Rust::Breaking,
                    path.clone(),
                    format!("request type {} → {}", bm.input, cm.input),
                );
            }
            if bm.output != cm.output {
                push(
                    Changed,
                    Severity::Breaking,
                    Rust::Breaking,
                    path.clone(),
                    format!("response type {} → {}", bm.output, cm.output),
                );
            }
            if (bm.client_streaming, bm.server_streaming) != (cm.client_streaming, cm.server_streaming) {
                let shape = |m: &Method| match (m.client_streaming, m.server_streaming) {
                    (false, false) => "unary",
                    (false, true) => "server streaming",
                    (true, false) => "client streaming",
                    (true, true) => "bidirectional streaming",
                };
                push(
                    Changed,
                    Severity::Breaking,
                    Rust::Breaking,
                    path,
                    format!("streaming {} → {}", shape(bm), shape(cm)),
                );
            }
        }
        for m in cs.keys().filter(|m| !bs.contains_key(*m)) {
            // A provided method on the server trait and on one version's client trait.
            push(
                Added,
                Severity::Additive,
                Rust::Additive,
                format!("{name}.{m}"),
                "RPC added".into(),
            );
        }
    }
    for name in c.services.keys().filter(|n| !b.services.contains_key(*n)) {
        push(
            Added,
            Severity::Additive,
            Rust::Additive,
            name.clone(),
            "service added".into(),
        );
    }

    // Comments of elements present on both sides (prost copies them into rustdoc only).
    if opts.comments {
        let present = |n: &str| {
            let parent = n.rsplit_once('.').map(|(p, _)| p).unwrap_or("");
            b.messages.contains_key(n)
                || b.enums.contains_key(n)
                || b.services.contains_key(n)
                || b.messages.contains_key(parent)
                || b.enums.contains_key(parent)
                || b.services.contains_key(parent)
        };
        let cur_present = |n: &str| {
            let parent = n.rsplit_once('.').map(|(p, _)| p).unwrap_or("");
            c.messages.contains_key(n)
                || c.enums.contains_key(n)
                || c.services.contains_key(n)
                || c.messages.contains_key(parent)
                || c.enums.contains_key(parent)
                || c.services.contains_key(parent)
        };
        let keys: BTreeSet<&String> = b.comments.keys().chain(c.comments.keys()).collect();
        for k in keys {
            if b.comments.get(k) != c.comments.get(k) && present(k) && cur_present(k) && element_on_both(&b, &c, k) {
                push(Changed, Severity::None, Rust::None, k.clone(), "comment changed".into());
            }
        }
    }
    out
}

/// Whether `name` names the same element on both sides (so a comment change is not an add/remove).
fn element_on_both(b: &Index, c: &Index, name: &str) -> bool {
    let both_msg = |n: &str| b.messages.contains_key(n) && c.messages.contains_key(n);
    let both_enum = |n: &str| b.enums.contains_key(n) && c.enums.contains_key(n);
    let both_svc = |n: &str| b.services.contains_key(n) && c.services.contains_key(n);
    if both_msg(name) || both_enum(name) || both_svc(name) {
        return true;
    }
    let Some((parent, leaf)) = name.rsplit_once('.') else {
        return false;
    };
    if both_msg(parent) {
        let has = |ix: &Index| ix.messages[parent].fields.values().any(|f| f.name == leaf);
        return has(b) && has(c);
    }
    if both_enum(parent) {
        let has = |ix: &Index| ix.enums[parent].values.values().any(|ns| ns.contains(leaf));
        return has(b) && has(c);
    }
    if both_svc(parent) {
        return b.services[parent].contains_key(leaf) && c.services[parent].contains_key(leaf);
    }
    false
}

fn join(names: &BTreeSet<String>) -> String {
    names.iter().cloned().collect::<Vec<_>>().join("/")
}

fn compare_field(message: &str, bf: &Field, cf: &Field, push: &mut impl FnMut(Kind, Severity, Rust, String, String)) {
    let path = format!("{message}.{}", cf.name);
    let rust = if rust_type(bf) == rust_type(cf) {
        Rust::None
    } else {
        Rust::Breaking
    };
    if bf.name != cf.name {
        // Same number: the same bytes; the Rust field is renamed.
        push(
            Kind::Changed,
            Severity::Compatible,
            Rust::Breaking,
            path.clone(),
            format!("field {} renamed from {}", cf.number, bf.name),
        );
    }
    let (bt, ct) = (bf.proto_type(), cf.proto_type());
    if bf.map != cf.map || bf.repeated != cf.repeated {
        push(
            Kind::Changed,
            Severity::Breaking,
            rust,
            path.clone(),
            format!("cardinality/type {bt} → {ct}"),
        );
    } else if bf.ty != cf.ty || bf.type_name != cf.type_name {
        let same_group = wire_group(bf.ty) == wire_group(cf.ty);
        // Messages are only compatible with themselves; enums of another name keep varint bytes.
        let severity = if !same_group || (bf.ty == Type::Message && bf.type_name != cf.type_name) {
            Severity::Breaking
        } else {
            Severity::Compatible
        };
        push(Kind::Changed, severity, rust, path.clone(), format!("type {bt} → {ct}"));
    } else if bf.proto3_optional != cf.proto3_optional {
        // buf WIRE: implicit and explicit presence are both singular (compatible); prost: T ↔ Option<T>.
        push(
            Kind::Changed,
            Severity::Compatible,
            rust,
            path.clone(),
            format!("presence {bt} → {ct}"),
        );
    }
    if bf.oneof != cf.oneof {
        let show = |o: &Option<String>| o.clone().unwrap_or_else(|| "(none)".into());
        push(
            Kind::Changed,
            Severity::Breaking,
            Rust::Breaking,
            path.clone(),
            format!("oneof {} → {}", show(&bf.oneof), show(&cf.oneof)),
        );
    }
    if bf.deprecated != cf.deprecated {
        // `#[deprecated]` warns; it breaks nothing.
        let what = if cf.deprecated {
            "deprecated"
        } else {
            "no longer deprecated"
        };
        push(Kind::Changed, Severity::None, Rust::None, path, format!("field {what}"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn compile(text: &str) -> FileDescriptorSet {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("t.proto"), text).unwrap();
        protox::compile(["t.proto"], [dir.path()]).unwrap()
    }

    const BASE: &str = r#"
syntax = "proto3";
package t.v1;
// The thing.
message Thing {
  string name = 1;
  int32 count = 2;
  repeated string tags = 3;
  map<string, int64> sizes = 4;
  optional bool flag = 5;
  Inner inner = 6;
  oneof choice {
    string a = 7;
    int64 b = 8;
  }
  Color color = 9;
  message Inner { sint32 x = 1; }
}
enum Color { COLOR_UNSPECIFIED = 0; RED = 1; GREEN = 2; }
message Empty {}
service Svc {
  rpc Get(Thing) returns (Thing);
  rpc Watch(Empty) returns (stream Thing);
}
"#;

    fn changes(edit: &str, with: &str) -> Vec<Change> {
        let edited = BASE.replacen(edit, with, 1);
        assert_ne!(edited, BASE, "the edit {edit:?} must apply");
        diff(&compile(BASE), &compile(&edited), Options { comments: true })
    }

    fn one(edit: &str, with: &str) -> (Severity, Rust, String, String) {
        let c = changes(edit, with);
        assert_eq!(c.len(), 1, "one change expected: {c:#?}");
        (c[0].severity, c[0].rust, c[0].path.clone(), c[0].detail.clone())
    }

    #[test]
    fn identical_descriptors_have_no_changes() {
        assert!(diff(&compile(BASE), &compile(BASE), Options { comments: true }).is_empty());
    }

    #[test]
    fn removed_field_is_breaking_everywhere() {
        let (s, r, p, d) = one("  int32 count = 2;\n", "");
        assert_eq!(
            (s, r, p.as_str()),
            (Severity::Breaking, Rust::Breaking, "t.v1.Thing.count")
        );
        assert!(d.contains("removed"), "{d}");
    }

    #[test]
    fn renumbered_field_breaks_the_wire_but_not_rust() {
        let (s, r, p, d) = one("int32 count = 2;", "int32 count = 20;");
        assert_eq!((s, r, p.as_str()), (Severity::Breaking, Rust::None, "t.v1.Thing.count"));
        assert!(d.contains("renumbered 2 → 20"), "{d}");
    }

    #[test]
    fn incompatible_type_change_is_breaking() {
        let (s, r, _, d) = one("int32 count = 2;", "string count = 2;");
        assert_eq!((s, r), (Severity::Breaking, Rust::Breaking));
        assert!(d.contains("int32 → string"), "{d}");
    }

    #[test]
    fn wire_compatible_type_change_still_breaks_rust_when_the_rust_type_changes() {
        assert_eq!(one("int32 count = 2;", "int64 count = 2;").0, Severity::Compatible);
        assert_eq!(one("int32 count = 2;", "int64 count = 2;").1, Rust::Breaking);
        // sint32 → sint64 are one wire group too.
        assert_eq!(one("sint32 x = 1;", "sint64 x = 1;").0, Severity::Compatible);
    }

    #[test]
    fn same_rust_type_with_other_wire_encoding_is_wire_breaking_only() {
        // int32 (varint) → sint32 (zigzag): different bytes, both i32 in Rust.
        assert_eq!(one("int32 count = 2;", "sint32 count = 2;").0, Severity::Breaking);
        assert_eq!(one("int32 count = 2;", "sint32 count = 2;").1, Rust::None);
    }

    #[test]
    fn changed_cardinality_is_breaking() {
        let (s, r, _, d) = one("repeated string tags = 3;", "string tags = 3;");
        assert_eq!((s, r), (Severity::Breaking, Rust::Breaking));
        assert!(d.contains("repeated string → string"), "{d}");
    }

    #[test]
    fn explicit_presence_is_wire_compatible_but_changes_the_rust_type() {
        assert_eq!(one("optional bool flag = 5;", "bool flag = 5;").0, Severity::Compatible);
        assert_eq!(one("optional bool flag = 5;", "bool flag = 5;").1, Rust::Breaking);
    }

    #[test]
    fn new_field_is_wire_additive_and_rust_breaking() {
        let (s, r, p, d) = one("Color color = 9;", "Color color = 9;\n  string motd_path = 10;");
        assert_eq!(
            (s, r, p.as_str()),
            (Severity::Additive, Rust::Breaking, "t.v1.Thing.motd_path")
        );
        assert_eq!(d, "field 10 (string) added");
    }

    #[test]
    fn new_oneof_member_is_additive_and_breaks_rust_matches() {
        let (s, r, _, d) = one("int64 b = 8;", "int64 b = 8;\n    bool c = 10;");
        assert_eq!((s, r), (Severity::Additive, Rust::Breaking));
        assert!(d.contains("oneof choice"), "{d}");
    }

    #[test]
    fn field_moved_out_of_a_oneof_is_breaking() {
        let c = changes("    int64 b = 8;\n  }", "  }\n  int64 b = 8;");
        assert!(
            c.iter()
                .any(|c| c.severity == Severity::Breaking && c.detail.contains("oneof choice → (none)")),
            "{c:#?}"
        );
    }

    #[test]
    fn renamed_field_is_wire_compatible_and_renames_the_rust_field() {
        let (s, r, p, d) = one("string name = 1;", "string title = 1;");
        assert_eq!(
            (s, r, p.as_str()),
            (Severity::Compatible, Rust::Breaking, "t.v1.Thing.title")
        );
        assert!(d.contains("renamed from name"), "{d}");
    }

    #[test]
    fn removed_message_is_breaking_and_new_message_is_additive() {
        let (s, r, p, _) = one("message Empty {}", "message Empty {}\nmessage Extra { string x = 1; }");
        assert_eq!((s, r, p.as_str()), (Severity::Additive, Rust::Additive, "t.v1.Extra"));
        // The field that uses it goes too (it would not compile without it).
        let edited =
            BASE.replacen("  Inner inner = 6;\n", "", 1)
                .replacen("  message Inner { sint32 x = 1; }\n", "", 1);
        let c = diff(&compile(BASE), &compile(&edited), Options { comments: true });
        assert!(c.iter().any(|c| c.path == "t.v1.Thing.Inner"
            && c.detail == "message removed"
            && c.severity == Severity::Breaking));
    }

    #[test]
    fn enum_values_added_removed_renamed_renumbered() {
        let (s, r, p, _) = one("GREEN = 2; }", "GREEN = 2; BLUE = 3; }");
        assert_eq!(
            (s, r, p.as_str()),
            (Severity::Additive, Rust::Breaking, "t.v1.Color.BLUE")
        );
        let (s, r, _, d) = one(" GREEN = 2; }", " }");
        assert_eq!((s, r), (Severity::Breaking, Rust::Breaking));
        assert!(d.contains("removed"), "{d}");
        let (s, r, _, d) = one("GREEN = 2;", "VERDE = 2;");
        assert_eq!((s, r), (Severity::Compatible, Rust::Breaking));
        assert!(d.contains("renamed from GREEN"), "{d}");
        let (s, r, _, d) = one("GREEN = 2;", "GREEN = 7;");
        assert_eq!((s, r), (Severity::Breaking, Rust::Breaking));
        assert!(d.contains("renumbered 2 → 7"), "{d}");
        let (s, r, p, _) = one(
            "message Empty {}",
            "message Empty {}\nenum Shade { SHADE_UNSPECIFIED = 0; }",
        );
        assert_eq!((s, r, p.as_str()), (Severity::Additive, Rust::Additive, "t.v1.Shade"));
    }

    #[test]
    fn rpc_rules() {
        let (s, r, p, _) = one(
            "rpc Watch(Empty) returns (stream Thing);",
            "rpc Watch(Empty) returns (stream Thing);\n  rpc Put(Thing) returns (Empty);",
        );
        assert_eq!((s, r, p.as_str()), (Severity::Additive, Rust::Additive, "t.v1.Svc.Put"));
        let (s, r, _, d) = one("  rpc Get(Thing) returns (Thing);\n", "");
        assert_eq!((s, r, d.as_str()), (Severity::Breaking, Rust::Breaking, "RPC removed"));
        let (s, _, _, d) = one("rpc Get(Thing) returns (Thing);", "rpc Get(Empty) returns (Thing);");
        assert_eq!(s, Severity::Breaking);
        assert!(d.contains("request type t.v1.Thing → t.v1.Empty"), "{d}");
        let (s, _, _, d) = one("rpc Get(Thing) returns (Thing);", "rpc Get(Thing) returns (Empty);");
        assert_eq!(s, Severity::Breaking);
        assert!(d.contains("response type"), "{d}");
        let (s, r, _, d) = one("returns (stream Thing)", "returns (Thing)");
        assert_eq!((s, r), (Severity::Breaking, Rust::Breaking));
        assert!(d.contains("server streaming → unary"), "{d}");
    }

    #[test]
    fn services_added_and_removed() {
        let (s, r, p, _) = one(
            "message Empty {}",
            "message Empty {}\nservice Other { rpc Ping(Empty) returns (Empty); }",
        );
        assert_eq!((s, r, p.as_str()), (Severity::Additive, Rust::Additive, "t.v1.Other"));
        let edited = BASE.replacen("service Svc {", "service Renamed {", 1);
        let c = diff(&compile(BASE), &compile(&edited), Options { comments: true });
        assert!(
            c.iter()
                .any(|c| c.path == "t.v1.Svc" && c.severity == Severity::Breaking && c.detail == "service removed"),
            "{c:#?}"
        );
    }

    #[test]
    fn comments_only_change_is_none() {
        let (s, r, p, d) = one("// The thing.", "// The thing, reworded.");
        assert_eq!(
            (s, r, p.as_str(), d.as_str()),
            (Severity::None, Rust::None, "t.v1.Thing", "comment changed")
        );
        // Not reported when comments are not compared (upstream mode).
        let edited = BASE.replacen("// The thing.", "// Other words.", 1);
        assert!(diff(&compile(BASE), &compile(&edited), Options { comments: false }).is_empty());
    }

    #[test]
    fn deprecation_is_none() {
        let (s, r, _, d) = one("int32 count = 2;", "int32 count = 2 [deprecated = true];");
        assert_eq!((s, r, d.as_str()), (Severity::None, Rust::None, "field deprecated"));
    }
}
