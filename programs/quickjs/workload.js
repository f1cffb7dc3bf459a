// A JavaScript workload for QuickJS on WASI: the engine's interpreter, garbage collector,
// regular expressions, number formatting, BigInt, typed arrays, exceptions, generators and
// promises, each printing a deterministic line. The same script run by the same QuickJS built
// natively made expected.txt.

"use strict";

function section(name, f) {
    const value = f();
    print(name + ":", typeof value === "string" ? value : JSON.stringify(value));
}

// A seeded generator, so every run sees the same "random" data.
function lcg(seed) {
    let s = seed >>> 0;
    return () => (s = (Math.imul(s, 1664525) + 1013904223) >>> 0);
}

section("fib", () => {
    const fib = (n) => (n < 2 ? n : fib(n - 1) + fib(n - 2));
    return fib(24);
});

section("sort", () => {
    const next = lcg(42);
    const a = Array.from({ length: 50000 }, () => next() % 1000000);
    a.sort((x, y) => x - y);
    let ok = true;
    for (let i = 1; i < a.length; i++) ok = ok && a[i - 1] <= a[i];
    return [ok, a[0], a[a.length >> 1], a[a.length - 1]];
});

section("strings", () => {
    const words = ["alpha", "beta", "gamma", "delta", "epsilon"];
    const next = lcg(7);
    const parts = [];
    for (let i = 0; i < 20000; i++) parts.push(words[next() % words.length] + (next() % 100));
    const text = parts.join(" ");
    const digits = (text.match(/\d+/g) || []).reduce((s, d) => s + Number(d), 0);
    const replaced = text.replace(/a(l|m)+/g, (m, g) => g.toUpperCase()).length;
    const upper = text.toUpperCase().split("E").length;
    return [text.length, digits, replaced, upper, text.indexOf("delta42"), `${words[1]}-${1 + 2}`];
});

section("regexp", () => {
    const re = /(?<year>\d{4})-(?<month>\d{2})-(?<day>\d{2})/u;
    const m = "on 2026-12-01 and 1999-01-31".match(re);
    const all = [..."a1b22c333".matchAll(/(\d)+/g)].map((x) => x[0]);
    const sticky = /foo/y;
    sticky.lastIndex = 3;
    return [m.groups.year, m.groups.month, m.groups.day, all, sticky.test("barfoo"),
            /^[\w.+-]+@\w+\.\w+$/.test("a.b+c@example.com"), "x".padStart(4, "ab")];
});

section("json", () => {
    const next = lcg(3);
    const make = (depth) =>
        depth === 0
            ? { n: next() % 1000, s: "v" + (next() % 50), b: (next() & 1) === 1, z: null }
            : { list: [make(depth - 1), make(depth - 1)], depth };
    const tree = make(10);
    const text = JSON.stringify(tree);
    const back = JSON.parse(text);
    let leaves = 0, sum = 0;
    (function walk(t) {
        if (t.list) t.list.forEach(walk);
        else { leaves++; sum += t.n; }
    })(back);
    return [text.length, leaves, sum, JSON.stringify({ a: [1, "2", { b: 3.5 }] }, null, 1).length];
});

section("collections", () => {
    const m = new Map();
    const s = new Set();
    const next = lcg(11);
    for (let i = 0; i < 30000; i++) {
        // `| 0`: this QuickJS hashes an integer-valued double apart from the same integer, so
        // keys of mixed representation would make the sizes depend on the build.
        const k = (next() % 5000) | 0;
        m.set(k, (m.get(k) || 0) + 1);
        s.add(k % 777);
    }
    let max = 0;
    for (const [, v] of m) max = Math.max(max, v);
    const wm = new WeakMap();
    const key = {};
    wm.set(key, 5);
    return [m.size, s.size, max, wm.get(key), [...s].slice(0, 3)];
});

section("classes", () => {
    class Shape {
        constructor(name) { this.name = name; }
        area() { return 0; }
        toString() { return `${this.name}(${this.area().toFixed(2)})`; }
    }
    class Circle extends Shape {
        #r;
        constructor(r) { super("circle"); this.#r = r; }
        area() { return Math.PI * this.#r * this.#r; }
        static unit() { return new Circle(1); }
    }
    class Rect extends Shape {
        constructor(w, h) { super("rect"); Object.assign(this, { w, h }); }
        area() { return this.w * this.h; }
        get diagonal() { return Math.hypot(this.w, this.h); }
    }
    const shapes = [Circle.unit(), new Rect(3, 4), new Circle(2.5)];
    const total = shapes.reduce((s, x) => s + x.area(), 0);
    return [shapes.map(String).join(" "), total.toFixed(6), shapes[1].diagonal,
            shapes[0] instanceof Shape, Object.getPrototypeOf(Rect) === Shape];
});

section("closures", () => {
    const counters = [];
    for (let i = 0; i < 1000; i++) {
        let c = i;
        counters.push(() => (c += i));
    }
    let sum = 0;
    for (let round = 0; round < 10; round++) for (const f of counters) sum += f();
    const compose = (...fs) => (x) => fs.reduceRight((v, f) => f(v), x);
    return [sum, compose((x) => x + 1, (x) => x * 2, Math.abs)(-21)];
});

section("exceptions", () => {
    class MyError extends Error {
        constructor(depth) { super("deep " + depth); this.depth = depth; }
    }
    const thrower = (d) => { if (d === 0) throw new MyError(d); return thrower(d - 1) + 1; };
    const caught = [];
    for (const d of [0, 10, 200]) {
        try { thrower(d); } catch (e) { caught.push(e instanceof MyError ? e.message : "?"); }
    }
    let order = "";
    const f = () => { try { order += "t"; throw 1; } catch { order += "c"; return "r"; } finally { order += "f"; } };
    const r = f();
    // Unbounded recursion is a RangeError/InternalError in JavaScript, not a crash.
    let overflow = "none";
    const down = (n) => down(n + 1) + 1;
    try { down(0); } catch (e) { overflow = e.constructor.name + ": " + e.message; }
    return [caught, order, r, overflow];
});

section("generators", () => {
    function* primes() {
        const found = [];
        for (let n = 2; ; n++) {
            if (found.every((p) => n % p !== 0)) { found.push(n); yield n; }
        }
    }
    const out = [];
    for (const p of primes()) { if (out.length === 200) break; out.push(p); }
    function* tree(d) { if (d === 0) { yield 1; return; } yield* tree(d - 1); yield* tree(d - 1); }
    let count = 0;
    for (const x of tree(12)) count += x;
    return [out[199], out.reduce((a, b) => a + b, 0), count];
});

section("bigint", () => {
    let f = 1n;
    for (let i = 1n; i <= 60n; i++) f *= i;
    const p = 2n ** 127n - 1n;
    return [f.toString(), (p % 1000007n).toString(), (-(7n ** 30n) / 3n).toString(), BigInt.asUintN(64, -1n).toString(16)];
});

section("numbers", () => {
    const xs = [0.1 + 0.2, 1 / 3, 123456789.123, 1e21, 5e-7, -0, 2 ** 53 + 1, 0.000001234];
    return [xs.map(String).join(" "), (1234.5678).toFixed(2), (0.00001234).toPrecision(3),
            (255).toString(16), (255).toString(2), parseFloat("3.25e2x"), parseInt("0x1f"),
            Number("  12  "), (123.456).toExponential(4), Math.round(-2.5), Math.max(),
            (Math.sin(1) * 1e9 | 0), Math.sqrt(2).toFixed(12), (1e300 * 1e10), Number.MAX_SAFE_INTEGER % 1000];
});

section("typed_arrays", () => {
    const f = new Float64Array(10000);
    for (let i = 0; i < f.length; i++) f[i] = i * 0.5;
    const u8 = new Uint8Array(f.buffer, 8, 16);
    const dv = new DataView(f.buffer);
    dv.setUint32(0, 0xdeadbeef, true);
    const i32 = new Int32Array([5, -3, 9, 1]).sort();
    return [f.reduce((a, b) => a + b, 0), Array.from(u8.slice(0, 8)), dv.getUint32(0, true).toString(16),
            dv.getUint8(0), Array.from(i32), new Uint8ClampedArray([300, -5, 1.5])[0]];
});

section("objects", () => {
    const log = [];
    const target = { a: 1, b: 2 };
    const proxy = new Proxy(target, {
        get(t, k, r) { log.push("get " + String(k)); return Reflect.get(t, k, r); },
        has(t, k) { log.push("has " + String(k)); return k in t; },
    });
    const { a, ...rest } = proxy;
    const sym = Symbol("tag");
    const o = { [sym]: 1, x: 2, get y() { return this.x * 10; } };
    const frozen = Object.freeze({ k: 1 });
    let assignError = "";
    try { frozen.k = 2; } catch (e) { assignError = e.constructor.name; }
    return [a, rest, "a" in proxy, log.length, o.y, Object.keys(o), Object.getOwnPropertySymbols(o).length,
            assignError, Object.entries({ p: 1, q: [2] }), structuredCloneLike({ d: [1, { e: 2 }] })];
    function structuredCloneLike(v) { return JSON.parse(JSON.stringify(v)); }
});

section("dates", () => {
    const d = new Date(Date.UTC(2026, 11, 1, 17, 30, 5, 123));
    return [d.toISOString(), d.getUTCDay(), new Date(0).toISOString(), Date.parse("2000-02-29T12:00:00Z"),
            typeof Date.now(), Date.now() > 1.6e12];
});

section("eval", () => {
    const f = new Function("a", "b", "return a * b + 1");
    const g = (0, eval)("(function (x) { return x.split('').reverse().join(''); })");
    let syntax = "";
    try { eval("let = ;"); } catch (e) { syntax = e.constructor.name; }
    return [f(6, 7), g("weft"), syntax, eval("[1,2,3].map(x => x ** 2)")];
});

section("labels", () => {
    let found = null;
    outer: for (let i = 0; i < 50; i++) {
        for (let j = 0; j < 50; j++) {
            if (j > i) continue outer;
            if (i * j === 391) { found = [i, j]; break outer; }
        }
    }
    const kind = (x) => { switch (typeof x) { case "number": return x % 2 ? "odd" : "even"; case "string": return "s"; default: return "other"; } };
    return [found, [1, 2, "x", null].map(kind)];
});

// Garbage: many short-lived objects and cycles, collected as the script runs.
section("garbage", () => {
    let keep = null;
    for (let round = 0; round < 200; round++) {
        const nodes = [];
        for (let i = 0; i < 500; i++) nodes.push({ i, next: null, data: new Array(8).fill(round) });
        for (let i = 0; i < nodes.length; i++) nodes[i].next = nodes[(i + 1) % nodes.length];
        keep = nodes[round % nodes.length];
    }
    let n = 0, p = keep;
    do { n++; p = p.next; } while (p !== keep);
    return [n, keep.data[0]];
});

// Promises and async functions: their jobs run after the script, in order.
const events = [];
async function worker(name, steps) {
    for (let i = 0; i < steps; i++) {
        await null;
        events.push(name + i);
    }
    return name;
}
Promise.all([worker("a", 3), worker("b", 2), Promise.resolve("c")])
    .then((names) => {
        events.push("all:" + names.join(""));
        return Promise.reject(new Error("handled rejection"));
    })
    .catch((e) => events.push("caught:" + e.message))
    .finally(() => print("promises:", JSON.stringify(events)));
print("script: done, args", JSON.stringify(scriptArgs));
