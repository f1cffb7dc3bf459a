//! WebAssembly 3.0's type system without GC, through the API: typed function references
//! (`(ref $t)` types as `ValType::Ref`, typed references as `Val::FuncRef` checked against the
//! function's type, tables of typed references, `call_ref` of null), constant expressions that
//! read defined globals, recursion groups canonicalized across modules, and GC refused.

use weft::{
    Engine, Error, ExternType, Func, FuncType, GlobalType, HeapType, Instance, Module, Mutability,
    RefType, Store, Table, TableType, Trap, Val, ValType,
};

/// A module whose exports take, return and hold `(ref $i2i)` and `(ref null $i2i)` values.
const TYPED: &str = r#"
    (module
      (type $i2i (func (param i32) (result i32)))
      (func $double (type $i2i) (i32.mul (local.get 0) (i32.const 2)))
      (elem declare func $double)
      (table $fns (export "fns") 2 (ref $i2i) (ref.func $double))
      (global (export "g") (ref null $i2i) (ref.null $i2i))
      (func (export "apply") (param $f (ref null $i2i)) (param $x i32) (result i32)
        (call_ref $i2i (local.get $x) (local.get $f)))
      (func (export "get") (param i32) (result (ref $i2i))
        (table.get $fns (local.get 0)))
      (func (export "double") (type $i2i) (call $double (local.get 0))))
"#;

fn instantiate() -> (Engine, Store<()>, Instance) {
    let engine = Engine::default();
    let module = Module::new(&engine, TYPED).unwrap();
    let mut store = Store::new(&engine, ());
    let instance = Instance::new(&mut store, &module, &[]).unwrap();
    (engine, store, instance)
}

fn i2i() -> FuncType {
    FuncType::new([ValType::I32], [ValType::I32])
}

#[test]
fn typed_reference_types_name_the_engines_function_type() {
    let (engine, mut store, instance) = instantiate();
    let id = engine.func_type_id(&i2i());
    assert_eq!(engine.func_type_of(id), Some(i2i()));
    let typed = |nullable| ValType::Ref(RefType::new(nullable, HeapType::ConcreteFunc(id)));
    let apply = instance.get_func(&mut store, "apply").unwrap();
    assert_eq!(
        apply.ty(&store),
        FuncType::new([typed(true), ValType::I32], [ValType::I32])
    );
    let get = instance.get_func(&mut store, "get").unwrap();
    assert_eq!(get.ty(&store).results(), &[typed(false)]);
    // Not mistaken for funcref (or externref), though a typed reference may be used as one.
    assert_ne!(typed(true), ValType::FUNCREF);
    assert!(typed(false).matches(&typed(true)));
    assert!(typed(true).matches(&ValType::FUNCREF));
    assert!(!ValType::FUNCREF.matches(&typed(true)));
    assert!(!typed(true).matches(&ValType::EXTERNREF));
    assert!(!typed(false).is_defaultable());
    let module = Module::new(&engine, TYPED).unwrap();
    let table = module
        .exports()
        .find(|(name, _)| *name == "fns")
        .map(|(_, ty)| ty);
    assert_eq!(
        table,
        Some(ExternType::Table(TableType::new(typed(false), 2, None)))
    );
}

#[test]
fn typed_references_pass_through_func_call_checked_against_the_functions_type() {
    let (_, mut store, instance) = instantiate();
    let apply = instance.get_func(&mut store, "apply").unwrap();
    let double = instance.get_func(&mut store, "double").unwrap();
    let mut results = [Val::I32(0)];
    apply
        .call(
            &mut store,
            &[Val::FuncRef(Some(double)), Val::I32(21)],
            &mut results,
        )
        .unwrap();
    assert_eq!(results[0].i32(), Some(42));

    // A host function of the same type is a `(ref $i2i)` too.
    let host = Func::wrap(&mut store, |x: i32| x + 1);
    apply
        .call(
            &mut store,
            &[Val::FuncRef(Some(host)), Val::I32(1)],
            &mut results,
        )
        .unwrap();
    assert_eq!(results[0].i32(), Some(2));

    // A function of another type is not, and the call does not start.
    let other = Func::wrap(&mut store, |x: i64| x);
    let err = apply
        .call(
            &mut store,
            &[Val::FuncRef(Some(other)), Val::I32(1)],
            &mut results,
        )
        .unwrap_err();
    assert!(matches!(err, Error::TypeMismatch(_)), "{err}");
    let err = apply
        .call(
            &mut store,
            &[Val::ExternRef(None), Val::I32(1)],
            &mut results,
        )
        .unwrap_err();
    assert!(matches!(err, Error::TypeMismatch(_)), "{err}");

    // A non-nullable result comes back as the function.
    let get = instance.get_func(&mut store, "get").unwrap();
    let mut result = [Val::FuncRef(None)];
    get.call(&mut store, &[Val::I32(1)], &mut result).unwrap();
    let Val::FuncRef(Some(f)) = result[0] else {
        panic!("expected a function, got {:?}", result[0]);
    };
    let mut doubled = [Val::I32(0)];
    f.call(&mut store, &[Val::I32(5)], &mut doubled).unwrap();
    assert_eq!(doubled[0].i32(), Some(10));
}

#[test]
fn call_ref_of_null_traps_with_null_reference() {
    let (_, mut store, instance) = instantiate();
    let apply = instance.get_func(&mut store, "apply").unwrap();
    let mut results = [Val::I32(0)];
    let err = apply
        .call(&mut store, &[Val::FuncRef(None), Val::I32(1)], &mut results)
        .unwrap_err();
    assert_eq!(err.trap(), Some(Trap::NullReference));
}

#[test]
fn table_of_typed_references_starts_from_its_initializer_and_checks_what_it_is_given() {
    let (engine, mut store, instance) = instantiate();
    let table = instance.get_table(&mut store, "fns").unwrap();
    // Both elements are `$double`, from the table's initializer expression.
    for i in 0..2 {
        let Some(Val::FuncRef(Some(f))) = table.get(&mut store, i) else {
            panic!("element {i} is not a function");
        };
        let mut results = [Val::I32(0)];
        f.call(&mut store, &[Val::I32(4)], &mut results).unwrap();
        assert_eq!(results[0].i32(), Some(8));
    }
    // Null does not fit a non-nullable table; another type does not either.
    assert!(matches!(
        table.set(&mut store, 0, Val::FuncRef(None)),
        Err(Error::TypeMismatch(_))
    ));
    let other = Func::wrap(&mut store, |x: i64| x);
    assert!(matches!(
        table.set(&mut store, 0, Val::FuncRef(Some(other))),
        Err(Error::TypeMismatch(_))
    ));
    let add_one = Func::wrap(&mut store, |x: i32| x + 1);
    table
        .set(&mut store, 1, Val::FuncRef(Some(add_one)))
        .unwrap();
    let get = instance.get_func(&mut store, "get").unwrap();
    let mut result = [Val::FuncRef(None)];
    get.call(&mut store, &[Val::I32(1)], &mut result).unwrap();
    assert_eq!(result[0], Val::FuncRef(Some(add_one)));

    // A host-made table of `(ref $i2i)` needs a non-null initial value of that type.
    let typed = ValType::Ref(RefType::new(
        false,
        HeapType::ConcreteFunc(engine.func_type_id(&i2i())),
    ));
    let ty = TableType::new(typed, 3, None);
    assert!(matches!(
        Table::new(&mut store, ty, Val::FuncRef(None)),
        Err(Error::TypeMismatch(_))
    ));
    let host_table = Table::new(&mut store, ty, Val::FuncRef(Some(add_one))).unwrap();
    assert_eq!(host_table.ty(&store).element, typed);
    assert_eq!(
        host_table.get(&mut store, 2),
        Some(Val::FuncRef(Some(add_one)))
    );
}

#[test]
fn typed_reference_globals_and_imports_follow_subtyping() {
    let (engine, mut store, instance) = instantiate();
    let g = instance.get_global(&mut store, "g").unwrap();
    assert_eq!(g.get(&mut store), Val::FuncRef(None));
    let id = engine.func_type_id(&i2i());
    let nullable = ValType::Ref(RefType::new(true, HeapType::ConcreteFunc(id)));
    assert_eq!(g.ty(&store), GlobalType::new(nullable, Mutability::Const));

    // An immutable `(ref null $i2i)` global may be imported as funcref, not the other way.
    let importer = Module::new(&engine, r#"(module (import "m" "g" (global funcref)))"#).unwrap();
    Instance::new(&mut store, &importer, &[g.into()]).unwrap();
    let funcref_global = weft::Global::new(
        &mut store,
        GlobalType::new(ValType::FUNCREF, Mutability::Const),
        Val::FuncRef(None),
    )
    .unwrap();
    let typed_importer = Module::new(
        &engine,
        r#"(module (type $t (func (param i32) (result i32)))
             (import "m" "g" (global (ref null $t))))"#,
    )
    .unwrap();
    let err = Instance::new(&mut store, &typed_importer, &[funcref_global.into()]).unwrap_err();
    assert!(matches!(err, Error::IncompatibleImport { .. }), "{err}");
    Instance::new(&mut store, &typed_importer, &[g.into()]).unwrap();
}

#[test]
fn constant_expressions_read_earlier_defined_globals() {
    let engine = Engine::default();
    let module = Module::new(
        &engine,
        r#"(module
             (memory (export "mem") 1)
             (global $base i32 (i32.const 16))
             (global $next (export "next") i32 (i32.add (global.get $base) (i32.const 4)))
             (data (global.get $next) "\2a"))"#,
    )
    .unwrap();
    let mut store = Store::new(&engine, ());
    let instance = Instance::new(&mut store, &module, &[]).unwrap();
    let next = instance.get_global(&mut store, "next").unwrap();
    assert_eq!(next.get(&mut store), Val::I32(20));
    let memory = instance.get_memory(&mut store, "mem").unwrap();
    assert_eq!(memory.data(&store)[20], 0x2a);
}

#[test]
fn gc_types_and_instructions_are_refused_as_unsupported() {
    let engine = Engine::default();
    for wat in [
        "(module (type (struct)))",
        "(module (func (local anyref)))",
        "(module (func (drop (ref.null none))))",
        "(module (func (result i32) (block (result eqref) (ref.null eq)) (drop) (i32.const 0)))",
        "(module (global (ref null i31) (ref.i31 (i32.const 1))))",
        "(module (type $t (sub (func))))",
    ] {
        let err = Module::new(&engine, wat).err().expect(wat);
        assert!(matches!(err, Error::Unsupported(_)), "{wat}: {err}");
    }
}

#[test]
fn equal_recursion_groups_are_the_same_types_across_modules() {
    let engine = Engine::default();
    let mut store = Store::new(&engine, ());
    // `$f` refers to itself through its group; the exporter's and importer's groups are equal.
    let group = r#"(rec (type $f (func (param (ref null $f)) (result i32))) (type $g (func)))"#;
    let exporter = Module::new(
        &engine,
        format!(
            r#"(module {group}
                 (func (export "f") (type $f) (i32.const 7))
                 (table (export "t") 1 funcref) (elem (i32.const 0) func 0))"#
        ),
    )
    .unwrap();
    let exporter = Instance::new(&mut store, &exporter, &[]).unwrap();
    let f = exporter.get_func(&mut store, "f").unwrap();
    let table = exporter.get_table(&mut store, "t").unwrap();
    let importer = Module::new(
        &engine,
        format!(
            r#"(module {group}
                 (import "m" "f" (func (type $f)))
                 (import "m" "t" (table 1 funcref))
                 (func (export "run") (result i32)
                   (call_indirect (type $f) (ref.null $f) (i32.const 0))))"#
        ),
    )
    .unwrap();
    let instance = Instance::new(&mut store, &importer, &[f.into(), table.into()]).unwrap();
    let run = instance
        .get_typed_func::<(), i32>(&mut store, "run")
        .unwrap();
    assert_eq!(run.call(&mut store, ()).unwrap(), 7);

    // The same function type alone in its group is another type: not importable as `$f`,
    // and `call_indirect` with it traps.
    let alone = Module::new(
        &engine,
        r#"(module (type $f (func (param (ref null $f)) (result i32)))
             (import "m" "f" (func (type $f))))"#,
    )
    .unwrap();
    let err = Instance::new(&mut store, &alone, &[f.into()]).unwrap_err();
    assert!(matches!(err, Error::IncompatibleImport { .. }), "{err}");
    let alone = Module::new(
        &engine,
        r#"(module (type $f (func (param (ref null $f)) (result i32)))
             (import "m" "t" (table 1 funcref))
             (func (export "run") (result i32)
               (call_indirect (type $f) (ref.null $f) (i32.const 0))))"#,
    )
    .unwrap();
    let instance = Instance::new(&mut store, &alone, &[table.into()]).unwrap();
    let run = instance
        .get_typed_func::<(), i32>(&mut store, "run")
        .unwrap();
    assert_eq!(
        run.call(&mut store, ()).unwrap_err().trap(),
        Some(Trap::IndirectCallTypeMismatch)
    );
}
