//! Methods written in Python, compiled by the kernel, run through the
//! bridge, each checked against what CPython computes for the same source
//! and inputs (`python3` on the machine is the test's oracle, never the
//! kernel's).

use std::io::Write;
use std::process::{Command, Stdio};

use serde_json::{json, Value as Json};

use crate::harness::*;

/// Runs `source`'s method on an object with `slots` and `args` in CPython:
/// `{"ok": result, "slots": {...}}` or `{"error": "Kind: message"}`.
const ORACLE: &str = r#"
import json, sys
case = json.load(sys.stdin)
class Obj:
    def __init__(self, slots):
        self.__dict__.update(slots)
scope = {}
exec(case["source"], {}, scope)
method = next(iter(scope.values()))
obj = Obj(case["slots"])
try:
    result = method(obj, *case["args"])
    print(json.dumps({"ok": result, "slots": obj.__dict__}))
except Exception as e:
    print(json.dumps({"error": f"{type(e).__name__}: {e}"}))
"#;

fn cpython(source: &str, slots: &Json, args: &Json) -> Json {
    let mut child = Command::new("python3")
        .args(["-c", ORACLE])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 (the oracle)");
    let case = json!({"source": source, "slots": slots, "args": args});
    child
        .stdin
        .take()
        .unwrap()
        .write_all(case.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "CPython failed on\n{source}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn to_json(v: &Value) -> Json {
    match v {
        Value::Nil => Json::Null,
        Value::Boolean(b) => json!(b),
        Value::Integer(i) => i
            .as_i64()
            .map(|i| json!(i))
            .unwrap_or_else(|| json!(i.as_u64())),
        Value::F64(f) => json!(f),
        Value::F32(f) => json!(f64::from(*f)),
        Value::String(s) => json!(s.as_str().unwrap_or_default()),
        Value::Array(items) => Json::Array(items.iter().map(to_json).collect()),
        Value::Map(entries) => Json::Object(
            entries
                .iter()
                .filter(|(k, v)| k.as_str() != Some("parent*") && field(v, "$method").is_none())
                .map(|(k, v)| (k.as_str().unwrap_or_default().to_string(), to_json(v)))
                .collect(),
        ),
        other => panic!("unexpected value {other}"),
    }
}

fn from_json(j: &Json) -> Value {
    match j {
        Json::Null => Value::Nil,
        Json::Bool(b) => Value::Boolean(*b),
        Json::Number(n) => n
            .as_i64()
            .map(Value::from)
            .unwrap_or_else(|| Value::F64(n.as_f64().unwrap())),
        Json::String(s) => s.as_str().into(),
        Json::Array(items) => Value::Array(items.iter().map(from_json).collect()),
        Json::Object(m) => Value::Map(
            m.iter()
                .map(|(k, v)| (k.as_str().into(), from_json(v)))
                .collect(),
        ),
    }
}

fn install(c: &Client, oid: u64, selector: &str, source: &str) -> Result<Value, (String, String)> {
    c.call(
        "create_method",
        &[
            ("oid", Value::from(oid)),
            ("selector", s(selector)),
            ("python", s(source)),
        ],
    )
}

/// Installs `source` as `selector` on a fresh object with `slots`, sends it
/// `args`, and checks the reply and the object's slots against CPython.
fn agrees_with_cpython(c: &Client, selector: &str, source: &str, slots: Json, args: Json) {
    let want = cpython(source, &slots, &args);
    let fields: Vec<(String, Value)> = slots
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), from_json(v)))
        .collect();
    let fields: Vec<(&str, Value)> = fields
        .iter()
        .map(|(k, v)| (k.as_str(), v.clone()))
        .collect();
    let oid = c.create(&fields);
    install(c, oid, selector, source)
        .unwrap_or_else(|e| panic!("install {selector}: {e:?}\n{source}"));
    let args_v: Vec<Value> = args.as_array().unwrap().iter().map(from_json).collect();
    let got = c.send(oid, selector, args_v);
    match (&want.get("ok"), got) {
        (Some(expected), Ok(reply)) => {
            assert_eq!(
                &to_json(must(&reply, "value")),
                *expected,
                "{selector}: result\n{source}"
            );
            let state = to_json(&c.slots(oid));
            assert_eq!(
                state, want["slots"],
                "{selector}: slots afterwards\n{source}"
            );
        }
        (None, Err((code, message))) => {
            assert_eq!(code, "method_trap", "{selector}: {message}");
            let expected = want["error"].as_str().unwrap();
            let kind = expected.split(':').next().unwrap();
            assert!(
                message.starts_with(kind),
                "{selector}: CPython says {expected:?}, the kernel {message:?}\n{source}"
            );
            let state = to_json(&c.slots(oid));
            assert_eq!(state, slots, "{selector}: nothing kept after the error");
        }
        (_, got) => panic!("{selector}: CPython {want}, the kernel {got:?}\n{source}"),
    }
}

#[test]
fn every_construct_of_the_subset_computes_what_cpython_computes() {
    let k = Kernel::start();
    let c = k.dealer();
    let cases: Vec<(&str, &str, Json, Json)> = vec![
        ("arith_", "def arith(self, a, b):\n    return [a + b, a - b, a * b, a / b, a // b, a % b, a ** 2, -a, +b, 7 // -2, -7 % 3, 2 ** -1, True + 1]\n", json!({}), json!([17, 5])),
        ("floats_", "def floats(self, x):\n    return [x * 2.5, x / 4, round(x / 3, 2), round(2.5), round(3.5), abs(-x), float('1.5') + 1, int(-7.9), int('42'), str(1.0), str(0.1 + 0.2), str(1e16 * 10), 3.0 == 3, 7.5 // 2, -7.5 % 2]\n", json!({}), json!([7])),
        ("strings_", "def strings(self, s):\n    t = '  ' + s + '  '\n    return [t.strip(), s.upper(), s.lower(), s.split('b'), '-'.join(['a', 'b']), s.startswith('Ab'), s.endswith('z'), s.replace('b', 'X'), f'<{s}:{len(s)}>', s[1:3], s[-1], s[:2], s[2:], 'b' in s, s * 2, s < 'b', 'x y  z'.split(), s.find('c'), s.count('b')]\n", json!({}), json!(["Abcb"])),
        ("lists_", "def lists(self, xs):\n    ys = list(xs)\n    ys.append(10)\n    last = ys.pop()\n    first = ys.pop(0)\n    ys.insert(1, 99)\n    ys.extend([7, 7])\n    zs = sorted(ys)\n    ys.sort()\n    ys.reverse()\n    return [last, first, ys, zs, ys.index(99), ys.count(7), sum(xs), min(xs), max(xs), min(3, 1, 2), xs[1:], xs[-2], 3 in xs, xs + [0], [xs] * 2, len(ys), [1, 2] < [1, 3]]\n", json!({}), json!([[5, 3, 8, 1]])),
        ("dicts_", "def dicts(self, d):\n    d['z'] = 26\n    out = []\n    for k in d:\n        out.append(k)\n    for k, v in d.items():\n        out.append(v)\n    return [out, d.get('a'), d.get('q', 'none'), list(d.keys()), list(d.values()), 'a' in d, d.pop('a'), d, len(d), {'n': [1, {'m': None}]}]\n", json!({}), json!([{"a": 1, "b": 2}])),
        ("flow_", "def flow(self, n):\n    total = 0\n    i = 0\n    while True:\n        i += 1\n        if i > n:\n            break\n        if i % 2 == 0:\n            continue\n        total += i\n    kinds = []\n    for x in [0, 5, 15]:\n        if x == 0:\n            kinds.append('zero')\n        elif 1 <= x < 10:\n            kinds.append('small')\n        else:\n            kinds.append('big')\n    word = ''\n    for ch in 'abc':\n        word = ch + word\n    steps = []\n    for j in range(10, 0, -3):\n        steps.append(j)\n    pairs = []\n    for a in range(3):\n        for b in range(3):\n            if a == b:\n                continue\n            pairs.append(a * 10 + b)\n    return [total, kinds, word, steps, pairs, 'yes' if n > 3 else 'no', 0 or 'x', '' and 1, not n, 1 < n <= 10 < 20]\n", json!({}), json!([9])),
        ("state_", "def state(self, x):\n    self.count += 1\n    self.items.append(x)\n    self.name = self.name.upper()\n    self.total = self.count * 10\n    return self.count\n", json!({"count": 1, "items": [1], "name": "ada"}), json!([2])),
        ("types_", "def types(self, x):\n    return [isinstance(x, int), isinstance(x, str), isinstance(True, int), isinstance(2.0, float), bool(0), bool([1]), str(None), str([1, 'a', None, 2.5]), str({'a': 'b'}), int(True), repr('it\\'s')]\n", json!({}), json!([3])),
        ("raises_", "def raises(self, x):\n    self.touched = True\n    raise ValueError(f'bad {x}')\n", json!({"touched": false}), json!([4])),
        ("asserts_", "def asserts(self, x):\n    assert x > 10, 'too small'\n    return x\n", json!({}), json!([4])),
        ("divides_", "def divides(self, x):\n    return x // 0\n", json!({}), json!([4])),
        ("indexes_", "def indexes(self, x):\n    return [1, 2][x]\n", json!({}), json!([5])),
        ("keys_", "def keys(self, k):\n    return {'a': 1}[k]\n", json!({}), json!(["b"])),
        ("types_mixed_", "def types_mixed(self, x):\n    return x + 'a'\n", json!({}), json!([1])),
        ("unbound_", "def unbound(self, x):\n    if x:\n        y = 1\n    return y\n", json!({}), json!([0])),
    ];
    for (selector, source, slots, args) in cases {
        agrees_with_cpython(&c, selector, source, slots, args);
    }
}

#[test]
fn limits_and_errors_end_as_method_trap_keeping_nothing() {
    let k = Kernel::start_with(Options::config("[sandbox]\nfuel_per_call = 2000000\n"));
    let c = k.dealer();
    let o = c.create(&[("n", Value::from(1))]);
    for (selector, source, needle) in [
        (
            "overflow",
            "def overflow(self):\n    self.n = 2\n    return 2 ** 62 * 4\n",
            "OverflowError",
        ),
        (
            "forever",
            "def forever(self):\n    self.n = 3\n    while True:\n        pass\n",
            "fuel",
        ),
        (
            "huge",
            "def huge(self):\n    self.n = 4\n    s = 'x'\n    while True:\n        s = s + s\n",
            "Error|fuel",
        ),
        // A list that contains itself: printed with "...", refused as a
        // value to keep, and nothing hangs.
        (
            "cycle",
            "def cycle(self):\n    self.n = 5\n    l = [1]\n    l.append(l)\n    s = str(l)\n    self.x = l\n",
            "ValueError",
        ),
        (
            "attribute",
            "def attribute(self):\n    return self.missing\n",
            "AttributeError",
        ),
    ] {
        install(&c, o, selector, source).unwrap();
        let (code, message) = c.send(o, selector, vec![]).unwrap_err();
        assert_eq!(code, "method_trap", "{selector}: {message}");
        assert!(
            needle.split('|').any(|n| message.contains(n)),
            "{selector}: {message}"
        );
        assert_eq!(c.get(o, "n"), Value::from(1), "{selector} kept nothing");
    }
    // Wrong arity is a clear trap too.
    install(&c, o, "two_", "def two(self, a, b):\n    return a\n").unwrap();
    let (code, message) = c.send(o, "two_", vec![Value::from(1)]).unwrap_err();
    assert_eq!(code, "method_trap");
    assert!(message.contains("takes 2 arguments (1 given)"), "{message}");
}

#[test]
fn constructs_outside_the_subset_are_refused_at_install_with_their_line() {
    let k = Kernel::start();
    let c = k.dealer();
    let o = c.create(&[]);
    for (source, construct, line) in [
        ("def f(self):\n    import os\n", "import", 2),
        ("def f(self):\n    return lambda: 1\n", "a lambda", 2),
        ("class A:\n    pass\n", "a class", 1),
        (
            "def f(self):\n    x = [y for y in range(3)]\n",
            "a list comprehension",
            2,
        ),
        ("def f(self):\n    global g\n", "global", 2),
        (
            "def f(self):\n    return (1).real\n",
            "an attribute of a literal",
            2,
        ),
    ] {
        let (code, message) = install(&c, o, "f", source).unwrap_err();
        assert_eq!(code, "covenant_violation", "{source}");
        assert!(message.starts_with("python: "), "{message}");
        if line > 0 {
            assert!(message.contains(construct), "{message}");
            assert!(message.contains(&format!("line {line}")), "{message}");
        }
    }
    // The def is named as the selector is in Python.
    let (code, message) =
        install(&c, o, "deposit_", "def withdraw(self, n):\n    return n\n").unwrap_err();
    assert_eq!(code, "covenant_violation");
    assert!(message.contains("def deposit"), "{message}");
    assert!(
        c.ok("get_full_state", &[("oid", Value::from(o))])
            .to_string()
            .contains("\"methods\": {}")
            || field(
                &c.ok("get_full_state", &[("oid", Value::from(o))]),
                "methods"
            )
            .is_some_and(|m| m.as_map().is_some_and(Vec::is_empty))
    );
}

#[test]
fn python_calls_wat_calls_python_reads_delegate_and_survive_a_restart() {
    let k = Kernel::start();
    let c = k.dealer();
    let base = c.create(&[("greeting", s("hello"))]);
    let a = c.create(&[("parent*", parents(&[base]))]);
    let b = c.create(&[]);
    let target = c.create(&[("count", Value::from(40))]);
    // a.relay(b, target) [Python] -> b.forward(target) [WAT, the SDK's
    // example] -> target.increment() [Python].
    install(
        &c,
        a,
        "relay_",
        "def relay(self, via, to):\n    return [self.greeting, via.forward(to)]\n",
    )
    .unwrap();
    c.ok(
        "create_method",
        &[
            ("oid", Value::from(b)),
            ("selector", s("forward_")),
            ("wasm", Value::Binary(guest_example("forward"))),
        ],
    );
    install(
        &c,
        target,
        "increment",
        "def increment(self):\n    self.count = self.count + 1\n    return self.count\n",
    )
    .unwrap();
    let relayed = c.send_value(a, "relay_", vec![oref(b), Value::from(target)]);
    assert_eq!(
        to_json(&relayed),
        json!(["hello", 41]),
        "the greeting comes from the parent"
    );
    assert_eq!(c.get(target, "count"), Value::from(41));

    let k = k.restart();
    let c = k.dealer();
    let relayed = c.send_value(a, "relay_", vec![oref(b), Value::from(target)]);
    assert_eq!(to_json(&relayed), json!(["hello", 42]));
    let state = c.ok("get_full_state", &[("oid", Value::from(target))]);
    let source = must(
        &must(must(&state, "methods"), "increment")
            .as_array()
            .unwrap()[0],
        "source",
    )
    .clone();
    assert_eq!(must(&source, "language").as_str(), Some("python"));
    assert!(must(&source, "text")
        .as_str()
        .unwrap()
        .starts_with("def increment(self):"));
}

fn python_example(name: &str) -> String {
    let path = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../wasm-guest-sdk/examples/python")
        .join(format!("{name}.py"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The guest SDK's examples written in Python do what the Rust ones do,
/// and the two call each other: a Python transfer over Python accounts and
/// over Rust ones, all or nothing either way.
#[test]
fn the_sdk_examples_in_python_do_what_the_rust_ones_do() {
    let k = Kernel::start();
    let c = k.dealer();

    // counter and forward
    let proto = c.create(&[("count", Value::from(0))]);
    install(&c, proto, "increment", &python_example("counter")).unwrap();
    let counter = c.create(&[("parent*", parents(&[proto]))]);
    let forwarder = c.create(&[]);
    install(&c, forwarder, "forward_", &python_example("forward")).unwrap();
    assert_eq!(c.send_value(counter, "increment", vec![]), Value::from(1));
    assert_eq!(
        c.send_value(forwarder, "forward_", vec![oref(counter)]),
        Value::from(2)
    );
    assert_eq!(c.get(counter, "count"), Value::from(2));
    assert_eq!(
        c.get(proto, "count"),
        Value::from(0),
        "the clone's own slot changed"
    );

    // Accounts in Python, and accounts in Rust (the SDK's modules).
    let python_account = c.create(&[]);
    install(
        &c,
        python_account,
        "deposit_",
        &python_example("account_deposit"),
    )
    .unwrap();
    install(
        &c,
        python_account,
        "withdraw_",
        &python_example("account_withdraw"),
    )
    .unwrap();
    let rust_account = c.create(&[]);
    for (selector, name) in [
        ("deposit_", "account_deposit"),
        ("withdraw_", "account_withdraw"),
    ] {
        c.ok(
            "create_method",
            &[
                ("oid", Value::from(rust_account)),
                ("selector", s(selector)),
                ("wasm", Value::Binary(guest_example(name))),
            ],
        );
    }
    let bank = c.create(&[]);
    install(&c, bank, "transfer_", &python_example("transfer")).unwrap();
    for account in [python_account, rust_account] {
        let alice = c.create(&[
            ("parent*", parents(&[account])),
            ("balance", Value::from(100)),
        ]);
        let bob = c.create(&[
            ("parent*", parents(&[account])),
            ("balance", Value::from(5)),
        ]);
        let moved = c.send_value(
            bank,
            "transfer_",
            vec![oref(alice), oref(bob), Value::from(30)],
        );
        assert_eq!(moved, Value::Array(vec![Value::from(70), Value::from(35)]));
        // An overdraft: bob's deposit is written first, then the withdrawal fails.
        let (code, _) = c
            .send(
                bank,
                "transfer_",
                vec![oref(alice), oref(bob), Value::from(500)],
            )
            .unwrap_err();
        assert_eq!(code, "method_trap");
        assert_eq!(c.get(alice, "balance"), Value::from(70));
        assert_eq!(
            c.get(bob, "balance"),
            Value::from(35),
            "the deposit was rolled back"
        );
    }
}

/// Versions of one selector may be written in different languages, and
/// rolling back crosses languages.
#[test]
fn rollback_works_across_languages() {
    let k = Kernel::start();
    let c = k.dealer();
    let o = c.create(&[]);
    install(&c, o, "answer", "def answer(self):\n    return 'python'\n").unwrap();
    c.ok(
        "create_method",
        &[
            ("oid", Value::from(o)),
            ("selector", s("answer")),
            (
                "wat",
                s(r#"(module (import "uvm" "return_i64" (func $r (param i64)))
  (memory (export "memory") 1) (func (export "invoke") (call $r (i64.const 2))))"#),
            ),
        ],
    );
    assert_eq!(c.send_value(o, "answer", vec![]), Value::from(2));
    c.send_value(
        o,
        "rollbackMethod_toVersion_",
        vec![s("answer"), Value::from(1)],
    );
    assert_eq!(c.send_value(o, "answer", vec![]), s("python"));
    let state = c.ok("get_full_state", &[("oid", Value::from(o))]);
    let versions = must(must(&state, "methods"), "answer")
        .as_array()
        .unwrap()
        .clone();
    let languages: Vec<&str> = versions
        .iter()
        .map(|v| must(must(v, "source"), "language").as_str().unwrap())
        .collect();
    assert_eq!(languages, ["python", "wat"]);
}
