use super::*;
use crate::manifest::limits::MAX_DEPTH;
use crate::manifest::limits::MIN_EXPANDED_BYTES;

fn root(text: &str) -> Node {
    let loaded = load(text.as_bytes());
    assert!(loaded.errors.is_empty(), "{:?}", loaded.errors);
    loaded.root.expect("a tree")
}

fn map(node: &Node) -> &[Entry] {
    match &node.value {
        Value::Map(entries) => entries,
        other => panic!("not a map: {other:?}"),
    }
}

#[test]
fn spans_are_one_based_and_point_at_the_value() {
    let node = root("a: 1\nb:\n  c: hello\n");
    let b = &map(&node)[1];
    assert_eq!(b.key_span.start, Pos { line: 2, column: 1 });
    let c = &map(&b.value)[0];
    assert_eq!(c.value.span.start, Pos { line: 3, column: 6 });
    assert_eq!(c.value.span.width, 5);
}

#[test]
fn yaml11_scalars_resolve_like_pyyaml() {
    let node = root("a: yes\nb: 1.10\nc: 1e3\nd: 0x1f\ne: ~\nf: '12'\ng: 010\nh: -.5\n");
    let values: Vec<&Value> = map(&node).iter().map(|e| &e.value.value).collect();
    assert!(matches!(values[0], Value::Bool(b) if b.value && b.is_yaml11_word()));
    assert_eq!(values[1], &Value::Float(1.1));
    assert!(matches!(values[2], Value::Str { text, .. } if text == "1e3"));
    assert_eq!(values[3], &Value::Int(31));
    assert_eq!(values[4], &Value::Null);
    assert!(matches!(values[5], Value::Str { text, plain: false } if text == "12"));
    assert_eq!(values[6], &Value::Int(8));
    assert_eq!(values[7], &Value::Float(-0.5));
}

#[test]
fn merge_keys_fill_in_without_overriding_explicit_keys() {
    let node = root("base: &b {x: 1, y: 2}\nother:\n  y: 3\n  <<: *b\n");
    let other = map(&map(&node)[1].value);
    let keys: Vec<&str> = other.iter().map(|e| e.key.as_str()).collect();
    assert_eq!(keys, ["y", "x"]);
    assert_eq!(other[0].value.value, Value::Int(3));
}

#[test]
fn duplicate_keys_are_reported_at_the_second_one() {
    let loaded = load(b"a: 1\nb: 2\na: 3\n");
    assert_eq!(loaded.errors.len(), 1);
    assert_eq!(loaded.errors[0].kind, LoadErrorKind::DuplicateKey);
    assert_eq!(loaded.errors[0].span.start, Pos { line: 3, column: 1 });
}

#[test]
fn an_empty_document_counts_its_null_root() {
    for text in ["", "# only a comment\n", "\n\n"] {
        let loaded = load(text.as_bytes());
        assert_eq!(loaded.root.map(|r| r.value), Some(Value::Null), "{text:?}");
        assert_eq!(loaded.cost.nodes, 1, "{text:?}");
    }
}

#[test]
fn tabs_in_indentation_are_reported_once_per_line() {
    let loaded = load(b"a:\n\tb: 1\n");
    assert_eq!(loaded.errors.len(), 1, "{:?}", loaded.errors);
    assert_eq!(loaded.errors[0].kind, LoadErrorKind::Tab);
    assert_eq!(loaded.errors[0].span.start, Pos { line: 2, column: 1 });
}

#[test]
fn garbage_never_panics() {
    for bytes in [
        &b"\xff\xfe\x00"[..],
        b"",
        b"{{{{",
        b"- [a, b\n",
        b"a: *x",
        b"&a [*a]",
    ] {
        let _ = load(bytes);
    }
    let bomb = "a: &a [x, x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\nc: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]\ne: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]\nf: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e, *e]\ng: [*f, *f, *f, *f, *f, *f, *f, *f, *f, *f]\n";
    let loaded = load(bomb.as_bytes());
    assert_eq!(loaded.errors[0].kind, LoadErrorKind::TooLarge);
}

fn only_error(text: &str) -> LoadError {
    let loaded = load(text.as_bytes());
    assert!(loaded.root.is_none(), "no tree past a bound");
    assert_eq!(loaded.errors.len(), 1, "{:?}", loaded.errors);
    loaded.errors.into_iter().next().unwrap()
}

#[test]
fn a_list_nested_5000_deep_stops_at_level_65_instead_of_overflowing_the_stack() {
    let err = only_error(&format!("{}x\n", "- ".repeat(5_000)));
    assert_eq!(err.kind, LoadErrorKind::TooDeep);
    assert_eq!(
        err.span.start,
        Pos {
            line: 1,
            column: 129
        }
    );
    let at_limit = load(format!("{}x\n", "- ".repeat(MAX_DEPTH)).as_bytes());
    assert!(at_limit.errors.is_empty(), "{:?}", at_limit.errors);
    assert_eq!(at_limit.cost.depth, MAX_DEPTH);
}

#[test]
fn block_mappings_and_explicit_keys_count_as_levels() {
    let block: String = (0..1_500)
        .map(|i| format!("{}a:\n", " ".repeat(i)))
        .collect();
    let err = only_error(&block);
    assert_eq!(
        (err.kind, err.span.start),
        (
            LoadErrorKind::TooDeep,
            Pos {
                line: 65,
                column: 65
            }
        )
    );
    // `? ? ? x`: each `?` opens a mapping whose key is the next one, two bytes a level.
    let err = only_error(&format!("{}x\n", "? ".repeat(1_500)));
    assert_eq!(
        (err.kind, err.span.start),
        (
            LoadErrorKind::TooDeep,
            Pos {
                line: 1,
                column: 129
            }
        )
    );
}

#[test]
fn an_alias_counts_the_levels_of_its_anchor_where_it_is_pasted() {
    // Each line nests the previous anchor 40 levels deeper: 10 lines, 400 levels.
    let mut text = format!("a0: &a0 {}{}\n", "[".repeat(40), "]".repeat(40));
    for i in 1..10 {
        text += &format!(
            "a{i}: &a{i} {}*a{}{}\n",
            "[".repeat(40),
            i - 1,
            "]".repeat(40)
        );
    }
    let err = only_error(&text);
    assert_eq!(err.kind, LoadErrorKind::TooDeep);
    assert_eq!(
        err.span.start,
        Pos {
            line: 2,
            column: 49
        }
    );
    assert_eq!(
        err.message,
        "this alias nests its anchor's value deeper than 64 levels of lists and mappings"
    );
}

#[test]
fn an_alias_bomb_of_strings_stops_at_the_text_budget_before_copying() {
    // 50 aliases of a 20 KB string, repeated 1,000 times: 1 GB once expanded.
    let text = format!(
        "a: &a \"{}\"\nb: &b [{}]\nc: [{}]\n",
        "x".repeat(20_000),
        vec!["*a"; 50].join(","),
        vec!["*b"; 1_000].join(",")
    );
    let loaded = load(text.as_bytes());
    assert_eq!(loaded.errors.len(), 1, "{:?}", loaded.errors);
    let err = &loaded.errors[0];
    assert_eq!(err.kind, LoadErrorKind::TooLarge);
    // Lines 1 and 2 hold 1,020,003 bytes; the 16th `*b` (1,000,000 more each) crosses
    // 16 MiB, and sits at column 5 + 3 * 15.
    assert_eq!(
        err.span.start,
        Pos {
            line: 3,
            column: 50
        }
    );
    assert_eq!(
        err.message,
        "aliases expand the document to more than 16 MiB of text"
    );
    assert!(
        loaded.cost.bytes <= MIN_EXPANDED_BYTES + 1_000_000,
        "{:?}",
        loaded.cost
    );
}

#[test]
fn cost_counts_what_aliases_copy() {
    let loaded = load(b"a: &x [ab, {c: d}]\nb: *x\nc: [*x, *x]\n");
    assert!(loaded.errors.is_empty(), "{:?}", loaded.errors);
    // Values: the top mapping, the keys `a`, `b`, `c`, the list under `c`, and 5 per
    // copy of the anchor (the list, `ab`, the mapping, `c`, `d`); text: `abc` and
    // `abcd` per copy. The copies under `c` reach level 4.
    assert_eq!(
        loaded.cost,
        Cost {
            nodes: 1 + 3 + 1 + 5 * 4,
            bytes: 3 + 4 * 4,
            depth: 4,
        }
    );
}

#[test]
fn an_error_at_the_end_of_a_file_without_a_final_newline_points_into_the_file() {
    // The parser put it on line 2 of this one-line file.
    let err = only_error("a: [b");
    assert_eq!(err.kind, LoadErrorKind::Syntax);
    assert_eq!(err.span.start, Pos { line: 1, column: 6 });
    let err = only_error("a: [b\n");
    assert_eq!(err.span.start, Pos { line: 2, column: 1 });
}

#[test]
fn empty_file_is_null() {
    assert_eq!(root("").value, Value::Null);
    assert_eq!(root("# only a comment\n").value, Value::Null);
}
