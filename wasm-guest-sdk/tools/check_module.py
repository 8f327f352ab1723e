#!/usr/bin/env python3
"""Checks method modules against the method ABI (docs/method-abi.md).

    python3 check_module.py MODULE.wasm...

For each module: every import is a `uvm` function with exactly the ABI's
signature; `memory` (a memory) and `invoke` (a function of type `(func)`)
are exported; there is no start function. Prints the imports, exports and
memory limits; exits 1 if any module breaks a rule. Standard library only.
"""

import sys

I32, I64, F32, F64 = 0x7F, 0x7E, 0x7D, 0x7C
NAMES = {I32: "i32", I64: "i64", F32: "f32", F64: "f64"}

# docs/method-abi.md, "Scalar level" and "Value level": name -> (params, results)
ABI = {
    "arg_count": ((), (I32,)),
    "arg_i64": ((I32, I32), (I32,)),
    "arg_f64": ((I32, I32), (I32,)),
    "slot_i64": ((I32, I32, I32), (I32,)),
    "slot_f64": ((I32, I32, I32), (I32,)),
    "slot_str": ((I32, I32, I32, I32), (I32,)),
    "set_slot_i64": ((I32, I32, I64), (I32,)),
    "set_slot_f64": ((I32, I32, F64), (I32,)),
    "set_slot_str": ((I32, I32, I32, I32), (I32,)),
    "return_i64": ((I64,), ()),
    "return_f64": ((F64,), ()),
    "return_str": ((I32, I32), (I32,)),
    "log": ((I32, I32), ()),
    "arg_msgpack": ((I32, I32, I32), (I32,)),
    "slot_msgpack": ((I32, I32, I32, I32), (I32,)),
    "set_slot_msgpack": ((I32, I32, I32, I32), (I32,)),
    "return_msgpack": ((I32, I32), (I32,)),
    "self_oid": ((), (I64,)),
    "send": ((I64, I32, I32, I32, I32, I32, I32), (I32,)),
    "last_result": ((I32, I32), (I32,)),
}

KINDS = {0: "func", 1: "table", 2: "memory", 3: "global", 4: "tag"}


class Bytes:
    def __init__(self, data):
        self.data, self.pos = data, 0

    def byte(self):
        b = self.data[self.pos]
        self.pos += 1
        return b

    def uleb(self):
        result = shift = 0
        while True:
            b = self.byte()
            result |= (b & 0x7F) << shift
            shift += 7
            if b < 0x80:
                return result

    def take(self, n):
        out = self.data[self.pos:self.pos + n]
        if len(out) != n:
            raise ValueError("truncated module")
        self.pos += n
        return out

    def name(self):
        return self.take(self.uleb()).decode("utf-8")

    def limits(self):
        flags = self.byte()
        lo = self.uleb()
        hi = self.uleb() if flags & 1 else None
        return lo, hi


def sig(params, results):
    p = " ".join(NAMES.get(t, hex(t)) for t in params)
    r = " ".join(NAMES.get(t, hex(t)) for t in results)
    return f"({p}) -> ({r})"


def check(path):
    data = open(path, "rb").read()
    if data[:8] != b"\0asm\x01\0\0\0":
        return [f"{path}: not a wasm binary (version 1)"], {}
    r = Bytes(data)
    r.pos = 8
    types, imports, funcs, exports, memories = [], [], [], [], []
    start = False
    while r.pos < len(data):
        sid, size = r.byte(), r.uleb()
        s = Bytes(r.take(size))
        if sid == 1:
            for _ in range(s.uleb()):
                if s.byte() != 0x60:
                    raise ValueError("unexpected type form")
                params = tuple(s.take(s.uleb()))
                results = tuple(s.take(s.uleb()))
                types.append((params, results))
        elif sid == 2:
            for _ in range(s.uleb()):
                module, field, kind = s.name(), s.name(), s.byte()
                if kind == 0:
                    desc = s.uleb()
                elif kind == 1:
                    s.byte()
                    desc = s.limits()
                elif kind == 2:
                    desc = s.limits()
                elif kind == 3:
                    desc = (s.byte(), s.byte())
                else:
                    raise ValueError(f"unknown import kind {kind}")
                imports.append((module, field, kind, desc))
        elif sid == 3:
            funcs = [s.uleb() for _ in range(s.uleb())]
        elif sid == 5:
            memories = [s.limits() for _ in range(s.uleb())]
        elif sid == 7:
            exports = [(s.name(), s.byte(), s.uleb()) for _ in range(s.uleb())]
        elif sid == 8:
            start = True

    errors = []
    imported_funcs = []
    for module, field, kind, desc in imports:
        if kind != 0:
            errors.append(f"imports {module}.{field}, a {KINDS.get(kind)}: only functions may be imported")
            continue
        imported_funcs.append(desc)
        if module != "uvm":
            errors.append(f"imports {module}.{field}: only module `uvm` may be imported")
        elif field not in ABI:
            errors.append(f"imports uvm.{field}, which the ABI does not have")
        elif types[desc] != ABI[field]:
            errors.append(f"imports uvm.{field} as {sig(*types[desc])}; the ABI says {sig(*ABI[field])}")
    all_funcs = imported_funcs + funcs

    by_name = {name: (kind, idx) for name, kind, idx in exports}
    if by_name.get("memory", (None,))[0] != 2:
        errors.append("does not export its memory as `memory`")
    inv = by_name.get("invoke")
    if inv is None or inv[0] != 0:
        errors.append("does not export a function `invoke`")
    elif types[all_funcs[inv[1]]] != ((), ()):
        errors.append(f"exports `invoke` as {sig(*types[all_funcs[inv[1]]])}; the ABI says () -> ()")
    if start:
        errors.append("has a start function")

    info = {
        "imports": [f"{m}.{f} {sig(*types[d])}" if k == 0 else f"{m}.{f} ({KINDS.get(k)})"
                    for m, f, k, d in imports],
        "exports": [f"{n} ({KINDS.get(k, k)})" for n, k, _ in exports],
        "memory": [f"{lo} pages initial, max {hi if hi is not None else 'none'}" for lo, hi in memories],
        "functions": len(all_funcs),
        "bytes": len(data),
    }
    return [f"{path}: {e}" for e in errors], info


def main(paths):
    if not paths:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    failed = False
    for path in paths:
        try:
            errors, info = check(path)
        except (ValueError, IndexError, UnicodeDecodeError, OSError) as e:
            errors, info = [f"{path}: cannot parse: {e}"], {}
        if info:
            print(f"{path}: {info['bytes']} bytes, {info['functions']} functions, "
                  f"memory {'; '.join(info['memory']) or 'none defined'}")
            print(f"  imports: {', '.join(info['imports']) or 'none'}")
            print(f"  exports: {', '.join(info['exports'])}")
        for e in errors:
            print(f"ABI violation: {e}", file=sys.stderr)
            failed = True
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
