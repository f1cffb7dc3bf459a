//! Parsing a validated module's structure into a [`ModuleInfo`] (the pipeline's second stage).

use wasmparser::{
    ConstExpr, DataKind, ElementItems, ElementKind, ExternalKind, Operator, Parser, Payload,
    RefType, TypeRef,
};
use weft_environ::module_info::{
    ConstInit, ConstOp, DataMode, DataSegment, ElementMode, ElementSegment, EntityIndex,
    FunctionBodyInfo, GlobalInfo, Import, ModuleInfo,
};

use crate::CompileError;

/// Parses a module that wasmparser has already validated.
///
/// # Errors
/// A `CompileError::Invalid` if the binary is malformed (it should not be after validation, but
/// the parser is not trusted to agree with the validator on everything).
pub fn parse_module(wasm: &[u8]) -> Result<ModuleInfo, CompileError> {
    let mut info = ModuleInfo::default();
    for payload in Parser::new(0).parse_all(wasm) {
        match payload? {
            Payload::TypeSection(reader) => {
                for rec_group in reader {
                    let start = info.types.len() as u32;
                    for sub in rec_group?.into_types() {
                        if !sub.is_final
                            || !sub.supertype_idxs.is_empty()
                            || sub.composite_type.shared
                            || sub.composite_type.descriptor_idx.is_some()
                            || sub.composite_type.describes_idx.is_some()
                        {
                            return Err(CompileError::Unsupported(
                                "declared subtypes, shared or descriptor types (GC and later \
                                 proposals)"
                                    .into(),
                            ));
                        }
                        match &sub.composite_type.inner {
                            wasmparser::CompositeInnerType::Func(f) => {
                                for &ty in f.params().iter().chain(f.results()) {
                                    check_val_type(ty)?;
                                }
                                info.types.push(f.clone());
                            }
                            _ => {
                                return Err(CompileError::Unsupported(
                                    "non-function types (GC proposal)".into(),
                                ));
                            }
                        }
                    }
                    info.rec_groups.push(start..info.types.len() as u32);
                }
            }
            Payload::ImportSection(reader) => {
                for import in reader.into_imports() {
                    let import = import?;
                    let index = match import.ty {
                        TypeRef::Func(ty) => {
                            info.funcs.push(ty);
                            info.num_imported_funcs += 1;
                            EntityIndex::Func(info.funcs.len() as u32 - 1)
                        }
                        TypeRef::Table(ty) => {
                            check_ref_type(ty.element_type)?;
                            info.tables.push(ty);
                            info.table_inits.push(None);
                            info.num_imported_tables += 1;
                            EntityIndex::Table(info.tables.len() as u32 - 1)
                        }
                        TypeRef::Memory(ty) => {
                            if ty.shared {
                                return Err(CompileError::Unsupported(
                                    "shared memories (threads proposal)".into(),
                                ));
                            }
                            info.memories.push(ty);
                            info.num_imported_memories += 1;
                            EntityIndex::Memory(info.memories.len() as u32 - 1)
                        }
                        TypeRef::Global(ty) => {
                            check_val_type(ty.content_type)?;
                            info.globals.push(GlobalInfo { ty, init: None });
                            info.num_imported_globals += 1;
                            EntityIndex::Global(info.globals.len() as u32 - 1)
                        }
                        TypeRef::Tag(tag) => {
                            info.tags.push(tag.func_type_idx);
                            info.num_imported_tags += 1;
                            EntityIndex::Tag(info.tags.len() as u32 - 1)
                        }
                        other => {
                            return Err(CompileError::Unsupported(format!(
                                "import of kind {other:?}"
                            )));
                        }
                    };
                    info.imports.push(Import {
                        module: import.module.to_string(),
                        name: import.name.to_string(),
                        index,
                    });
                }
            }
            Payload::FunctionSection(reader) => {
                for ty in reader {
                    info.funcs.push(ty?);
                }
            }
            Payload::TableSection(reader) => {
                for table in reader {
                    let table = table?;
                    check_ref_type(table.ty.element_type)?;
                    info.table_inits.push(match &table.init {
                        wasmparser::TableInit::RefNull => None,
                        wasmparser::TableInit::Expr(expr) => Some(const_init(expr)?),
                    });
                    info.tables.push(table.ty);
                }
            }
            Payload::MemorySection(reader) => {
                for memory in reader {
                    let memory = memory?;
                    if memory.shared {
                        return Err(CompileError::Unsupported(
                            "shared memories (threads proposal)".into(),
                        ));
                    }
                    info.memories.push(memory);
                }
            }
            Payload::GlobalSection(reader) => {
                for global in reader {
                    let global = global?;
                    check_val_type(global.ty.content_type)?;
                    let init = const_init(&global.init_expr)?;
                    info.globals.push(GlobalInfo {
                        ty: global.ty,
                        init: Some(init),
                    });
                }
            }
            Payload::ExportSection(reader) => {
                for export in reader {
                    let export = export?;
                    let index = match export.kind {
                        ExternalKind::Func => EntityIndex::Func(export.index),
                        ExternalKind::Table => EntityIndex::Table(export.index),
                        ExternalKind::Memory => EntityIndex::Memory(export.index),
                        ExternalKind::Global => EntityIndex::Global(export.index),
                        ExternalKind::Tag => EntityIndex::Tag(export.index),
                        other => {
                            return Err(CompileError::Unsupported(format!(
                                "export of kind {other:?}"
                            )));
                        }
                    };
                    info.exports.push((export.name.to_string(), index));
                }
            }
            Payload::TagSection(reader) => {
                for tag in reader {
                    info.tags.push(tag?.func_type_idx);
                }
            }
            Payload::StartSection { func, .. } => info.start = Some(func),
            Payload::ElementSection(reader) => {
                for element in reader {
                    let element = element?;
                    let mode = match element.kind {
                        ElementKind::Passive => ElementMode::Passive,
                        ElementKind::Declared => ElementMode::Declared,
                        ElementKind::Active {
                            table_index,
                            offset_expr,
                        } => ElementMode::Active {
                            table: table_index.unwrap_or(0),
                            offset: const_init(&offset_expr)?,
                        },
                    };
                    let (ty, items) = match element.items {
                        ElementItems::Functions(funcs) => {
                            let mut items = Vec::new();
                            for f in funcs {
                                items.push(ConstInit::RefFunc(f?));
                            }
                            (RefType::FUNCREF, items)
                        }
                        ElementItems::Expressions(ty, exprs) => {
                            check_ref_type(ty)?;
                            let mut items = Vec::new();
                            for e in exprs {
                                items.push(const_init(&e?)?);
                            }
                            (ty, items)
                        }
                    };
                    info.elements.push(ElementSegment { mode, ty, items });
                }
            }
            Payload::DataSection(reader) => {
                for data in reader {
                    let data = data?;
                    let mode = match data.kind {
                        DataKind::Passive => DataMode::Passive,
                        DataKind::Active {
                            memory_index,
                            offset_expr,
                        } => DataMode::Active {
                            memory: memory_index,
                            offset: const_init(&offset_expr)?,
                        },
                    };
                    info.data.push(DataSegment {
                        mode,
                        range: data.range.end as usize - data.data.len()..data.range.end as usize,
                    });
                }
            }
            Payload::CodeSectionEntry(body) => {
                info.bodies.push(FunctionBodyInfo {
                    range: body.range().start as usize..body.range().end as usize,
                });
            }
            Payload::CustomSection(reader) => {
                if let wasmparser::KnownCustom::Name(names) = reader.as_known() {
                    // A malformed name section is ignored, as the spec asks of custom sections.
                    let _ = read_names(names, &mut info);
                }
            }
            _ => {}
        }
    }
    Ok(info)
}

/// Refuses the value types weft does not implement that validation may let through: the
/// abstract heap types of GC (`any`, `eq`, `i31`, `struct`, `array`, `none`, `nofunc`,
/// `noextern`, and `noexn`), shared and exact references. What passes is a number, a vector,
/// or a reference to a function (abstract or of a declared type), an extern or an exception,
/// which is all the runtime's API types describe.
///
/// # Errors
/// `CompileError::Unsupported` naming the type.
pub fn check_val_type(ty: wasmparser::ValType) -> Result<(), CompileError> {
    match ty {
        wasmparser::ValType::Ref(r) => check_ref_type(r),
        _ => Ok(()),
    }
}

/// [`check_val_type`] for a reference type.
///
/// # Errors
/// As [`check_val_type`].
pub fn check_ref_type(ty: RefType) -> Result<(), CompileError> {
    check_heap_type(ty.heap_type())
}

/// [`check_val_type`] for what a reference points to (as `ref.null` names it).
///
/// # Errors
/// As [`check_val_type`].
pub fn check_heap_type(ty: wasmparser::HeapType) -> Result<(), CompileError> {
    use wasmparser::{AbstractHeapType, HeapType};
    match ty {
        HeapType::Abstract {
            shared: false,
            ty:
                AbstractHeapType::Func
                | AbstractHeapType::Extern
                | AbstractHeapType::Exn
                | AbstractHeapType::NoExn,
        }
        | HeapType::Concrete(_) => Ok(()),
        other => Err(CompileError::Unsupported(format!(
            "heap type {other:?} (GC, exceptions or a later proposal)"
        ))),
    }
}

fn read_names(
    names: wasmparser::NameSectionReader<'_>,
    info: &mut ModuleInfo,
) -> Result<(), wasmparser::BinaryReaderError> {
    for name in names {
        match name? {
            wasmparser::Name::Module { name, .. } => info.name = Some(name.to_string()),
            wasmparser::Name::Function(map) => {
                for naming in map {
                    let naming = naming?;
                    info.func_names
                        .insert(naming.index, naming.name.to_string());
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// Reduces a validated constant expression to a [`ConstInit`]: one of the single-instruction
/// forms when it is one instruction, else an extended expression (WebAssembly 3.0).
fn const_init(expr: &ConstExpr<'_>) -> Result<ConstInit, CompileError> {
    let mut reader = expr.get_operators_reader();
    let mut ops = Vec::new();
    loop {
        let op = match reader.read()? {
            Operator::End => break,
            Operator::I32Const { value } => ConstOp::I32(value),
            Operator::I64Const { value } => ConstOp::I64(value),
            Operator::F32Const { value } => ConstOp::F32(value.bits()),
            Operator::F64Const { value } => ConstOp::F64(value.bits()),
            Operator::V128Const { value } => ConstOp::V128(u128::from_le_bytes(*value.bytes())),
            Operator::RefNull { hty } => {
                check_heap_type(hty)?;
                ConstOp::RefNull
            }
            Operator::RefFunc { function_index } => ConstOp::RefFunc(function_index),
            Operator::GlobalGet { global_index } => ConstOp::GlobalGet(global_index),
            Operator::I32Add => ConstOp::I32Add,
            Operator::I32Sub => ConstOp::I32Sub,
            Operator::I32Mul => ConstOp::I32Mul,
            Operator::I64Add => ConstOp::I64Add,
            Operator::I64Sub => ConstOp::I64Sub,
            Operator::I64Mul => ConstOp::I64Mul,
            other => {
                return Err(CompileError::Unsupported(format!(
                    "constant expression with {other:?}"
                )));
            }
        };
        ops.push(op);
    }
    Ok(match ops.as_slice() {
        [ConstOp::I32(v)] => ConstInit::I32(*v),
        [ConstOp::I64(v)] => ConstInit::I64(*v),
        [ConstOp::F32(v)] => ConstInit::F32(*v),
        [ConstOp::F64(v)] => ConstInit::F64(*v),
        [ConstOp::V128(v)] => ConstInit::V128(*v),
        [ConstOp::RefNull] => ConstInit::RefNull,
        [ConstOp::RefFunc(f)] => ConstInit::RefFunc(*f),
        [ConstOp::GlobalGet(g)] => ConstInit::GlobalGet(*g),
        _ => ConstInit::Expr(ops),
    })
}
