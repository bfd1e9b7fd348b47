//! A small `pg_catalog` for clients of the PostgreSQL protocol that browse before they
//! query: psql's `\dt` and `\d <table>`, and pgjdbc's `DatabaseMetaData` (`getSchemas`,
//! `getTables`, `getColumns`), which DBeaver and Metabase call to list tables and columns.
//!
//! It describes the tables of the session (names, columns, types and what each table
//! holds), never their rows: no row counts or statistics. Two parts:
//!
//! - tables in a schema `pg_catalog` (`pg_namespace`, `pg_class`, `pg_attribute`,
//!   `pg_type`, `pg_description`, `pg_database`, `pg_settings`, `pg_tables`, ... and empty
//!   ones for what Vitals has none of: indexes, constraints, defaults, policies...) and
//!   functions (`version()`, `current_schema()`, `format_type`, `pg_table_is_visible`...);
//! - [`rewrite`]: PostgreSQL syntax these clients use that DataFusion does not plan, turned
//!   into what it does, on the parsed statement (never on the text): `'pg_class'::regclass`
//!   becomes the oid, `COLLATE pg_catalog.default` goes, `OPERATOR(pg_catalog.~)` becomes
//!   `~`, `pg_catalog.` function prefixes go and `pg_*` relations without a schema are
//!   looked up in `pg_catalog`.
//!
//! Object ids are fixed: PostgreSQL's own for its catalog relations and types, 2200 for
//! `public`, and 16385 onwards for Vitals' tables in [`TABLES`] order.

use std::ops::ControlFlow;
use std::sync::Arc;

use datafusion::arrow::array::{
    ArrayRef, BooleanArray, Float64Array, Int64Array, RecordBatch, StringArray, new_null_array,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::catalog::{MemorySchemaProvider, SchemaProvider};
use datafusion::common::{Result, ScalarValue, exec_err};
use datafusion::datasource::MemTable;
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, TypeSignature, Volatility,
};
use datafusion::prelude::SessionContext;
use datafusion::sql::sqlparser::ast::{
    self, BinaryOperator, CastKind, Expr, Ident, ObjectName, ObjectNamePart, Statement, Value,
};
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::parser::Parser;

/// Vitals' tables in oid order, with what each holds (`pg_description`, `obj_description`).
pub(crate) const TABLES: [(&str, &str); 7] = [
    ("samples", "Every stored reading: one row per (patient, metric, device, time), buffered or in the lake"),
    ("rollups_hourly", "Hourly count, sum, min, max, mean, first and last of every series"),
    ("events", "Workouts, sleep, treatments and tags"),
    ("alerts", "Alerts raised by the rules, with their state"),
    ("patients", "Patients as pseudonyms, with their cohorts and registration; never identity"),
    ("cohorts", "Named groups of patients"),
    ("metrics", "The metric catalog: codes, units, LOINC codes, plausible ranges"),
];

const FIRST_TABLE_OID: i64 = 16385;
const DATABASE_OID: i64 = 16384;
const NS_CATALOG: i64 = 11;
const NS_PUBLIC: i64 = 2200;
const NS_INFORMATION_SCHEMA: i64 = 13000;
/// The owner of everything (`pg_get_userbyid`).
const OWNER_OID: i64 = 10;
const OWNER: &str = "vitals";

/// PostgreSQL's oids of its catalog relations, for `'pg_class'::regclass`.
const CATALOG_RELATIONS: [(&str, i64); 8] = [
    ("pg_type", 1247),
    ("pg_attribute", 1249),
    ("pg_proc", 1255),
    ("pg_class", 1259),
    ("pg_database", 1262),
    ("pg_namespace", 2615),
    ("pg_description", 2609),
    ("pg_constraint", 2606),
];

/// Types as the PostgreSQL protocol sends columns: (oid, name, length, `format_type`).
const TYPES: [(i64, &str, i64, &str); 11] = [
    (16, "bool", 1, "boolean"),
    (20, "int8", 8, "bigint"),
    (21, "int2", 2, "smallint"),
    (23, "int4", 4, "integer"),
    (25, "text", -1, "text"),
    (700, "float4", 4, "real"),
    (701, "float8", 8, "double precision"),
    (1043, "varchar", -1, "character varying"),
    (1082, "date", 4, "date"),
    (1114, "timestamp", 8, "timestamp without time zone"),
    (1184, "timestamptz", 8, "timestamp with time zone"),
];

/// The PostgreSQL type a column of this Arrow type is sent as (as the protocol's encoder does).
pub fn type_oid(t: &DataType) -> i64 {
    match t {
        DataType::Boolean => 16,
        DataType::Int8 | DataType::Int16 | DataType::UInt8 => 21,
        DataType::Int32 | DataType::UInt16 => 23,
        DataType::Int64 | DataType::UInt32 | DataType::UInt64 => 20,
        DataType::Float16 | DataType::Float32 => 700,
        DataType::Float64 | DataType::Decimal128(..) | DataType::Decimal256(..) => 701,
        DataType::Timestamp(_, Some(_)) => 1184,
        DataType::Timestamp(_, None) => 1114,
        DataType::Date32 | DataType::Date64 => 1082,
        _ => 25,
    }
}

/// A type as `format_type` writes it.
fn type_name(oid: i64) -> Option<&'static str> {
    TYPES.iter().find(|t| t.0 == oid).map(|t| t.3)
}

/// Whether a query may need the catalog: only then is it built and the statement rewritten.
pub(crate) fn wanted(sql: &str) -> bool {
    let lower = sql.to_ascii_lowercase();
    [
        "pg_",
        "::reg",
        "operator(",
        "collate",
        "current_schema",
        "version()",
        "format_type",
        "current_user",
        "session_user",
    ]
    .iter()
    .any(|w| lower.contains(w))
}

/// Registers the `pg_catalog` schema and functions for the tables of `tables` (name, schema).
pub(crate) fn register(ctx: &SessionContext, tables: &[(&str, SchemaRef)]) -> Result<()> {
    let schema = MemorySchemaProvider::new();
    for (name, batch) in catalog_tables(tables)? {
        let table = MemTable::try_new(batch.schema(), vec![vec![batch]])?;
        schema.register_table(name.to_owned(), Arc::new(table))?;
    }
    let catalog = ctx
        .catalog("vitals")
        .ok_or_else(|| datafusion::error::DataFusionError::Internal("no catalog vitals".into()))?;
    catalog.register_schema("pg_catalog", Arc::new(schema))?;
    for f in PgFunction::ALL {
        ctx.register_udf(ScalarUDF::new_from_impl(PgFunction::new(f)));
    }
    Ok(())
}

fn text(values: Vec<Option<String>>) -> ArrayRef {
    Arc::new(StringArray::from(values))
}
fn int(values: Vec<i64>) -> ArrayRef {
    Arc::new(Int64Array::from(values))
}
fn boolean(values: Vec<bool>) -> ArrayRef {
    Arc::new(BooleanArray::from(values))
}

/// One catalog table: named columns of one type each, all rows at once.
struct Builder {
    fields: Vec<Field>,
    columns: Vec<ArrayRef>,
}

impl Builder {
    fn new() -> Builder {
        Builder { fields: Vec::new(), columns: Vec::new() }
    }
    fn text(mut self, name: &str, values: Vec<Option<String>>) -> Builder {
        self.fields.push(Field::new(name, DataType::Utf8, true));
        self.columns.push(text(values));
        self
    }
    fn texts(self, name: &str, values: &[&str]) -> Builder {
        self.text(name, values.iter().map(|s| Some((*s).to_owned())).collect())
    }
    fn same_text(self, name: &str, value: Option<&str>, n: usize) -> Builder {
        self.text(name, vec![value.map(str::to_owned); n])
    }
    fn int(mut self, name: &str, values: Vec<i64>) -> Builder {
        self.fields.push(Field::new(name, DataType::Int64, false));
        self.columns.push(int(values));
        self
    }
    fn same_int(self, name: &str, value: i64, n: usize) -> Builder {
        self.int(name, vec![value; n])
    }
    fn same_bool(mut self, name: &str, value: bool, n: usize) -> Builder {
        self.fields.push(Field::new(name, DataType::Boolean, false));
        self.columns.push(boolean(vec![value; n]));
        self
    }
    fn bool(mut self, name: &str, values: Vec<bool>) -> Builder {
        self.fields.push(Field::new(name, DataType::Boolean, false));
        self.columns.push(boolean(values));
        self
    }
    fn float(mut self, name: &str, value: f64, n: usize) -> Builder {
        self.fields.push(Field::new(name, DataType::Float64, false));
        self.columns.push(Arc::new(Float64Array::from(vec![value; n])));
        self
    }
    fn build(self) -> Result<RecordBatch> {
        let schema = Arc::new(Schema::new(self.fields));
        Ok(RecordBatch::try_new(schema, self.columns)?)
    }
}

/// A table with these columns (all text) and no rows.
fn empty(columns: &[&str]) -> Result<RecordBatch> {
    let schema =
        Arc::new(Schema::new(columns.iter().map(|c| Field::new(*c, DataType::Utf8, true)).collect::<Vec<_>>()));
    let arrays: Vec<ArrayRef> = schema.fields().iter().map(|f| new_null_array(f.data_type(), 0)).collect();
    Ok(RecordBatch::try_new(schema, arrays)?)
}

fn table_oid(name: &str) -> Option<i64> {
    TABLES.iter().position(|t| t.0 == name).map(|i| FIRST_TABLE_OID + i as i64)
}

fn catalog_tables(tables: &[(&str, SchemaRef)]) -> Result<Vec<(&'static str, RecordBatch)>> {
    let listed: Vec<(i64, &str, &SchemaRef)> =
        tables.iter().filter_map(|(n, s)| table_oid(n).map(|oid| (oid, *n, s))).collect();
    let n = listed.len();
    let names: Vec<&str> = listed.iter().map(|t| t.1).collect();
    let namespaces = Builder::new()
        .int("oid", vec![NS_CATALOG, NS_PUBLIC, NS_INFORMATION_SCHEMA])
        .texts("nspname", &["pg_catalog", "public", "information_schema"])
        .same_int("nspowner", OWNER_OID, 3)
        .same_text("nspacl", None, 3)
        .build()?;
    let class = Builder::new()
        .int("oid", listed.iter().map(|t| t.0).collect())
        .texts("relname", &names)
        .same_int("relnamespace", NS_PUBLIC, n)
        .same_int("reltype", 0, n)
        .same_int("reloftype", 0, n)
        .same_int("relowner", OWNER_OID, n)
        .same_int("relam", 2, n)
        .same_int("relfilenode", 0, n)
        .same_int("reltablespace", 0, n)
        .same_int("relpages", 0, n)
        .float("reltuples", -1.0, n)
        .same_int("relallvisible", 0, n)
        .same_int("reltoastrelid", 0, n)
        .same_bool("relhasindex", false, n)
        .same_bool("relisshared", false, n)
        .same_text("relpersistence", Some("p"), n)
        .same_text("relkind", Some("r"), n)
        .int("relnatts", listed.iter().map(|t| t.2.fields().len() as i64).collect())
        .same_int("relchecks", 0, n)
        .same_bool("relhasrules", false, n)
        .same_bool("relhastriggers", false, n)
        .same_bool("relhassubclass", false, n)
        .same_bool("relrowsecurity", false, n)
        .same_bool("relforcerowsecurity", false, n)
        .same_bool("relispopulated", true, n)
        .same_text("relreplident", Some("d"), n)
        .same_bool("relispartition", false, n)
        .same_int("relrewrite", 0, n)
        .same_text("relacl", None, n)
        .same_text("reloptions", None, n)
        .same_text("relpartbound", None, n)
        .build()?;
    let columns: Vec<(i64, i64, &Field)> = listed
        .iter()
        .flat_map(|(oid, _, s)| s.fields().iter().enumerate().map(move |(i, f)| (*oid, i as i64 + 1, f.as_ref())))
        .collect();
    let c = columns.len();
    let types: Vec<i64> = columns.iter().map(|(_, _, f)| type_oid(f.data_type())).collect();
    let attribute = Builder::new()
        .int("attrelid", columns.iter().map(|c| c.0).collect())
        .text("attname", columns.iter().map(|c| Some(c.2.name().clone())).collect())
        .int("atttypid", types.clone())
        .same_int("attstattarget", -1, c)
        .int("attlen", types.iter().map(|t| TYPES.iter().find(|x| x.0 == *t).map_or(-1, |x| x.2)).collect())
        .int("attnum", columns.iter().map(|c| c.1).collect())
        .same_int("attndims", 0, c)
        .same_int("attcacheoff", -1, c)
        .same_int("atttypmod", -1, c)
        .bool("attbyval", types.iter().map(|t| *t != 25).collect())
        .same_text("attstorage", Some("p"), c)
        .same_text("attalign", Some("d"), c)
        .bool("attnotnull", columns.iter().map(|c| !c.2.is_nullable()).collect())
        .same_bool("atthasdef", false, c)
        .same_bool("atthasmissing", false, c)
        .same_text("attidentity", Some(""), c)
        .same_text("attgenerated", Some(""), c)
        .same_bool("attisdropped", false, c)
        .same_bool("attislocal", true, c)
        .same_int("attinhcount", 0, c)
        .int("attcollation", types.iter().map(|t| if *t == 25 { 100 } else { 0 }).collect())
        .same_text("attacl", None, c)
        .same_text("attoptions", None, c)
        .same_text("attfdwoptions", None, c)
        .build()?;
    let t = TYPES.len();
    let pg_type = Builder::new()
        .int("oid", TYPES.iter().map(|x| x.0).collect())
        .texts("typname", &TYPES.iter().map(|x| x.1).collect::<Vec<_>>())
        .same_int("typnamespace", NS_CATALOG, t)
        .same_int("typowner", OWNER_OID, t)
        .int("typlen", TYPES.iter().map(|x| x.2).collect())
        .bool("typbyval", TYPES.iter().map(|x| x.2 > 0).collect())
        .same_text("typtype", Some("b"), t)
        .same_text("typcategory", Some("U"), t)
        .same_bool("typispreferred", false, t)
        .same_bool("typisdefined", true, t)
        .same_text("typdelim", Some(","), t)
        .same_int("typrelid", 0, t)
        .same_int("typelem", 0, t)
        .same_int("typarray", 0, t)
        .same_bool("typnotnull", false, t)
        .same_int("typbasetype", 0, t)
        .same_int("typtypmod", -1, t)
        .same_int("typndims", 0, t)
        .int("typcollation", TYPES.iter().map(|x| if x.0 == 25 || x.0 == 1043 { 100 } else { 0 }).collect())
        .same_text("typdefault", None, t)
        .build()?;
    let description = Builder::new()
        .int("objoid", listed.iter().map(|t| t.0).collect())
        .same_int("classoid", 1259, n)
        .same_int("objsubid", 0, n)
        .text(
            "description",
            listed.iter().map(|t| TABLES.iter().find(|x| x.0 == t.1).map(|x| x.1.to_owned())).collect(),
        )
        .build()?;
    let database = Builder::new()
        .int("oid", vec![DATABASE_OID])
        .texts("datname", &["vitals"])
        .int("datdba", vec![OWNER_OID])
        .int("encoding", vec![6])
        .texts("datlocprovider", &["c"])
        .bool("datistemplate", vec![false])
        .bool("datallowconn", vec![true])
        .int("datconnlimit", vec![-1])
        .int("dattablespace", vec![1663])
        .texts("datcollate", &["C.UTF-8"])
        .texts("datctype", &["C.UTF-8"])
        .text("datacl", vec![None])
        .build()?;
    let settings: Vec<(&str, &str)> = SETTINGS.to_vec();
    let pg_settings = Builder::new()
        .texts("name", &settings.iter().map(|s| s.0).collect::<Vec<_>>())
        .texts("setting", &settings.iter().map(|s| s.1).collect::<Vec<_>>())
        .same_text("unit", None, settings.len())
        .same_text("category", Some("Vitals"), settings.len())
        .same_text("short_desc", Some(""), settings.len())
        .same_text("context", Some("internal"), settings.len())
        .same_text("vartype", Some("string"), settings.len())
        .build()?;
    let pg_tables = Builder::new()
        .same_text("schemaname", Some("public"), n)
        .texts("tablename", &names)
        .same_text("tableowner", Some(OWNER), n)
        .same_text("tablespace", None, n)
        .same_bool("hasindexes", false, n)
        .same_bool("hasrules", false, n)
        .same_bool("hastriggers", false, n)
        .same_bool("rowsecurity", false, n)
        .build()?;
    let roles = Builder::new()
        .int("oid", vec![OWNER_OID])
        .texts("rolname", &[OWNER])
        .bool("rolsuper", vec![false])
        .bool("rolinherit", vec![true])
        .bool("rolcreaterole", vec![false])
        .bool("rolcreatedb", vec![false])
        .bool("rolcanlogin", vec![true])
        .int("rolconnlimit", vec![-1])
        .build()?;
    let am = Builder::new().int("oid", vec![2]).texts("amname", &["heap"]).texts("amtype", &["t"]).build()?;
    let tablespace = Builder::new()
        .int("oid", vec![1663])
        .texts("spcname", &["pg_default"])
        .int("spcowner", vec![OWNER_OID])
        .build()?;
    let mut out = vec![
        ("pg_namespace", namespaces),
        ("pg_class", class),
        ("pg_attribute", attribute),
        ("pg_type", pg_type),
        ("pg_description", description),
        ("pg_database", database),
        ("pg_settings", pg_settings),
        ("pg_tables", pg_tables),
        ("pg_roles", roles.clone()),
        ("pg_user", roles),
        ("pg_am", am),
        ("pg_tablespace", tablespace),
    ];
    for (name, columns) in EMPTY_TABLES {
        out.push((name, empty(columns)?));
    }
    Ok(out)
}

/// Catalog tables of things Vitals has none of: indexes, constraints, defaults, views...
const EMPTY_TABLES: [(&str, &[&str]); 18] = [
    ("pg_views", &["schemaname", "viewname", "viewowner", "definition"]),
    ("pg_matviews", &["schemaname", "matviewname", "matviewowner", "definition"]),
    ("pg_attrdef", &["oid", "adrelid", "adnum", "adbin"]),
    ("pg_index", &["indexrelid", "indrelid", "indnatts", "indisunique", "indisprimary", "indkey", "indexprs"]),
    ("pg_constraint", &["oid", "conname", "connamespace", "contype", "conrelid", "confrelid", "conkey"]),
    ("pg_inherits", &["inhrelid", "inhparent", "inhseqno"]),
    ("pg_collation", &["oid", "collname", "collnamespace"]),
    ("pg_proc", &["oid", "proname", "pronamespace", "prorettype", "prokind"]),
    ("pg_extension", &["oid", "extname", "extversion", "extnamespace"]),
    ("pg_enum", &["oid", "enumtypid", "enumsortorder", "enumlabel"]),
    ("pg_trigger", &["oid", "tgrelid", "tgname", "tgisinternal"]),
    ("pg_policy", &["oid", "polname", "polrelid", "polcmd"]),
    ("pg_statistic_ext", &["oid", "stxrelid", "stxname", "stxnamespace"]),
    ("pg_publication", &["oid", "pubname"]),
    ("pg_publication_rel", &["oid", "prpubid", "prrelid"]),
    ("pg_publication_namespace", &["oid", "pnpubid", "pnnspid"]),
    ("pg_foreign_table", &["ftrelid", "ftserver"]),
    ("pg_stat_user_tables", &["relid", "schemaname", "relname", "n_live_tup"]),
];

/// `pg_settings`, `current_setting()` and `SHOW`-like questions clients ask.
const SETTINGS: [(&str, &str); 10] = [
    ("server_version", "16.0"),
    ("server_version_num", "160000"),
    ("server_encoding", "UTF8"),
    ("client_encoding", "UTF8"),
    ("standard_conforming_strings", "on"),
    ("integer_datetimes", "on"),
    ("DateStyle", "ISO, MDY"),
    ("TimeZone", "UTC"),
    ("search_path", "public"),
    ("max_identifier_length", "63"),
];

/// The functions of the catalog.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Fun {
    Version,
    CurrentSchema,
    CurrentDatabase,
    TableIsVisible,
    TypeIsVisible,
    GetUserById,
    FormatType,
    ObjDescription,
    ColDescription,
    EncodingToChar,
    HasPrivilege,
    GetExpr,
    CurrentSetting,
    BackendPid,
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct PgFunction {
    fun: Fun,
    name: &'static str,
    aliases: Vec<String>,
    signature: Signature,
}

impl PgFunction {
    const ALL: [Fun; 14] = [
        Fun::Version,
        Fun::CurrentSchema,
        Fun::CurrentDatabase,
        Fun::TableIsVisible,
        Fun::TypeIsVisible,
        Fun::GetUserById,
        Fun::FormatType,
        Fun::ObjDescription,
        Fun::ColDescription,
        Fun::EncodingToChar,
        Fun::HasPrivilege,
        Fun::GetExpr,
        Fun::CurrentSetting,
        Fun::BackendPid,
    ];

    fn new(fun: Fun) -> PgFunction {
        let (name, extra): (&str, &[&str]) = match fun {
            Fun::Version => ("version", &[]),
            Fun::CurrentSchema => ("current_schema", &[]),
            Fun::CurrentDatabase => ("current_database", &[]),
            Fun::TableIsVisible => ("pg_table_is_visible", &[]),
            Fun::TypeIsVisible => ("pg_type_is_visible", &[]),
            Fun::GetUserById => ("pg_get_userbyid", &[]),
            Fun::FormatType => ("format_type", &[]),
            Fun::ObjDescription => ("obj_description", &[]),
            Fun::ColDescription => ("col_description", &[]),
            Fun::EncodingToChar => ("pg_encoding_to_char", &[]),
            Fun::HasPrivilege => (
                "has_table_privilege",
                &[
                    "has_schema_privilege",
                    "has_database_privilege",
                    "has_column_privilege",
                    "has_any_column_privilege",
                    "pg_has_role",
                ],
            ),
            Fun::GetExpr => ("pg_get_expr", &[]),
            Fun::CurrentSetting => ("current_setting", &[]),
            Fun::BackendPid => ("pg_backend_pid", &[]),
        };
        let nullary = matches!(fun, Fun::Version | Fun::CurrentSchema | Fun::CurrentDatabase | Fun::BackendPid);
        let signature = if nullary {
            Signature::nullary(Volatility::Stable)
        } else {
            Signature::one_of(vec![TypeSignature::VariadicAny, TypeSignature::Nullary], Volatility::Stable)
        };
        PgFunction { fun, name, aliases: extra.iter().map(|s| (*s).to_owned()).collect(), signature }
    }
}

/// The text of `version()`: what clients parse for the server's version.
pub const VERSION: &str = concat!("PostgreSQL 16.0 (Vitals ", env!("CARGO_PKG_VERSION"), ") on x86_64-pc-linux-gnu");

impl ScalarUDFImpl for PgFunction {
    fn name(&self) -> &str {
        self.name
    }

    fn aliases(&self) -> &[String] {
        &self.aliases
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
        Ok(match self.fun {
            Fun::TableIsVisible | Fun::TypeIsVisible | Fun::HasPrivilege => DataType::Boolean,
            Fun::BackendPid => DataType::Int64,
            _ => DataType::Utf8,
        })
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let rows = args.number_rows;
        let arg = |i: usize| -> Result<ArrayRef> {
            match args.args.get(i) {
                Some(a) => a.clone().into_array(rows),
                None => Ok(new_null_array(&DataType::Null, rows)),
            }
        };
        let text_of = |i: usize| -> Result<Vec<Option<String>>> {
            let a = datafusion::arrow::compute::cast(&arg(i)?, &DataType::Utf8)?;
            let a = a.as_any().downcast_ref::<StringArray>().map(|s| s.iter().map(|v| v.map(str::to_owned)).collect());
            a.map_or_else(|| exec_err!("{}: argument {i} is not text", self.name), Ok)
        };
        let int_of = |i: usize| -> Result<Vec<Option<i64>>> {
            let a = datafusion::arrow::compute::cast(&arg(i)?, &DataType::Int64)?;
            let a = a.as_any().downcast_ref::<Int64Array>().map(|s| s.iter().collect());
            a.map_or_else(|| exec_err!("{}: argument {i} is not a number", self.name), Ok)
        };
        let constant = |v: ScalarValue| Ok(ColumnarValue::Scalar(v));
        match self.fun {
            Fun::Version => constant(ScalarValue::Utf8(Some(VERSION.to_owned()))),
            Fun::CurrentSchema => constant(ScalarValue::Utf8(Some("public".to_owned()))),
            Fun::CurrentDatabase => constant(ScalarValue::Utf8(Some("vitals".to_owned()))),
            Fun::BackendPid => constant(ScalarValue::Int64(Some(0))),
            Fun::TableIsVisible | Fun::TypeIsVisible | Fun::HasPrivilege => constant(ScalarValue::Boolean(Some(true))),
            Fun::GetExpr | Fun::ColDescription => constant(ScalarValue::Utf8(None)),
            Fun::GetUserById => constant(ScalarValue::Utf8(Some(OWNER.to_owned()))),
            Fun::EncodingToChar => constant(ScalarValue::Utf8(Some("UTF8".to_owned()))),
            Fun::FormatType => {
                let oids = int_of(0)?;
                let names: Vec<Option<String>> =
                    oids.iter().map(|o| o.map(|o| type_name(o).unwrap_or("???").to_owned())).collect();
                Ok(ColumnarValue::Array(text(names)))
            }
            Fun::ObjDescription => {
                let oids = int_of(0)?;
                let names: Vec<Option<String>> = oids
                    .iter()
                    .map(|o| {
                        o.and_then(|o| usize::try_from(o - FIRST_TABLE_OID).ok())
                            .and_then(|i| TABLES.get(i))
                            .map(|t| t.1.to_owned())
                    })
                    .collect();
                Ok(ColumnarValue::Array(text(names)))
            }
            Fun::CurrentSetting => {
                let names = text_of(0)?;
                let values: Vec<Option<String>> = names
                    .iter()
                    .map(|n| {
                        n.as_deref()
                            .and_then(|n| SETTINGS.iter().find(|s| s.0.eq_ignore_ascii_case(n)).map(|s| s.1.to_owned()))
                    })
                    .collect();
                Ok(ColumnarValue::Array(text(values)))
            }
        }
    }
}

/// Rewrites PostgreSQL catalog syntax in a parsed statement into what DataFusion plans
/// (see the module documentation).
pub(crate) fn rewrite(statement: &mut Statement) {
    let _ = ast::visit_relations_mut(statement, |name: &mut ObjectName| {
        if let [ObjectNamePart::Identifier(id)] = name.0.as_slice()
            && id.value.starts_with("pg_")
        {
            let id = id.clone();
            name.0 = vec![ObjectNamePart::Identifier(Ident::new("pg_catalog")), ObjectNamePart::Identifier(id)];
        }
        ControlFlow::<()>::Continue(())
    });
    let _ = ast::visit_expressions_mut(statement, |e: &mut Expr| {
        rewrite_expr(e);
        ControlFlow::<()>::Continue(())
    });
    if let Statement::Query(query) = statement {
        unique_names(&mut query.body);
        blank_if_empty(query);
    }
    // `SHOW search_path` and the like: the settings clients read.
    if let Statement::ShowVariable { variable } = statement
        && let [name] = variable.as_slice()
        && let Some((name, value)) = SETTINGS.iter().find(|s| s.0.eq_ignore_ascii_case(&name.value))
    {
        let sql = format!("SELECT '{value}' AS \"{name}\"");
        if let Ok(mut parsed) = Parser::parse_sql(&PostgreSqlDialect {}, &sql)
            && let Some(query) = parsed.pop()
        {
            *statement = query;
        }
    }
}

/// `SELECT c.oid, c.* FROM ...` names `oid` twice, which PostgreSQL allows and DataFusion
/// does not: the explicit column goes, as `c.*` holds it (clients read such columns by name).
fn unique_names(body: &mut ast::SetExpr) {
    match body {
        ast::SetExpr::Select(select) => {
            let starred: Vec<String> = select
                .projection
                .iter()
                .filter_map(|item| match item {
                    ast::SelectItem::QualifiedWildcard(ast::SelectItemQualifiedWildcardKind::ObjectName(n), _) => {
                        Some(last_part(n))
                    }
                    _ => None,
                })
                .collect();
            select.projection.retain(|item| {
                !matches!(item, ast::SelectItem::UnnamedExpr(Expr::CompoundIdentifier(ids))
                    if matches!(ids.as_slice(), [q, _] if starred.contains(&q.value.to_ascii_lowercase())))
            });
        }
        ast::SetExpr::SetOperation { left, right, .. } => {
            unique_names(left);
            unique_names(right);
        }
        ast::SetExpr::Query(q) => unique_names(&mut q.body),
        _ => {}
    }
}

/// The `pg_catalog` table a relation names, if it does.
fn catalog_table(f: &ast::TableFactor) -> Option<&str> {
    match f {
        ast::TableFactor::Table { name, .. } => match name.0.as_slice() {
            [ObjectNamePart::Identifier(schema), ObjectNamePart::Identifier(table)] if schema.value == "pg_catalog" => {
                Some(table.value.as_str())
            }
            _ => None,
        },
        _ => None,
    }
}

fn is_empty_table(f: &ast::TableFactor) -> bool {
    catalog_table(f).is_some_and(|t| EMPTY_TABLES.iter().any(|e| e.0 == t))
}

/// Whether a query surely has no rows: a `SELECT` over an empty catalog table (directly,
/// as the left side of left joins, or inner-joined), or a `UNION` of such.
fn is_empty(body: &ast::SetExpr) -> bool {
    use ast::JoinOperator as J;
    match body {
        ast::SetExpr::Select(select) => select.from.iter().any(|t| {
            let base_empty = is_empty_table(&t.relation)
                && t.joins
                    .iter()
                    .all(|j| matches!(j.join_operator, J::Join(_) | J::Inner(_) | J::Left(_) | J::LeftOuter(_)));
            let inner_empty = t.joins.iter().any(|j| {
                matches!(j.join_operator, J::Join(_) | J::Inner(_) | J::CrossJoin(_)) && is_empty_table(&j.relation)
            });
            base_empty || inner_empty
        }),
        ast::SetExpr::SetOperation { op: ast::SetOperator::Union, left, right, .. } => {
            is_empty(left) && is_empty(right)
        }
        ast::SetExpr::Query(q) => is_empty(&q.body),
        _ => false,
    }
}

/// Whether a query reads any `pg_catalog` table.
fn reads_catalog(body: &ast::SetExpr) -> bool {
    match body {
        ast::SetExpr::Select(select) => select.from.iter().any(|t| {
            catalog_table(&t.relation).is_some() || t.joins.iter().any(|j| catalog_table(&j.relation).is_some())
        }),
        ast::SetExpr::SetOperation { left, right, .. } => reads_catalog(left) || reads_catalog(right),
        ast::SetExpr::Query(q) => reads_catalog(&q.body),
        _ => false,
    }
}

/// A query over the catalog that surely has no rows becomes `SELECT NULL AS <name>, ...
/// WHERE false` with the same column names: clients ask about indexes, policies,
/// publications... with PostgreSQL features (arrays, `ANY`) that need not be planned to
/// know the answer is empty.
fn blank_if_empty(query: &mut ast::Query) {
    if !is_empty(&query.body) {
        return;
    }
    let mut first = query.body.as_ref();
    loop {
        match first {
            ast::SetExpr::SetOperation { left, .. } => first = left,
            ast::SetExpr::Query(q) => first = &q.body,
            _ => break,
        }
    }
    let ast::SetExpr::Select(select) = first else { return };
    let mut names = Vec::new();
    for (i, item) in select.projection.iter().enumerate() {
        let name = match item {
            ast::SelectItem::ExprWithAlias { alias, .. } => alias.value.clone(),
            ast::SelectItem::UnnamedExpr(Expr::Identifier(id)) => id.value.clone(),
            ast::SelectItem::UnnamedExpr(Expr::CompoundIdentifier(ids)) => {
                ids.last().map_or_else(|| format!("column{}", i + 1), |id| id.value.clone())
            }
            ast::SelectItem::UnnamedExpr(_) => format!("column{}", i + 1),
            // `SELECT *`: the columns are not known here; planned as written.
            _ => return,
        };
        names.push(name);
    }
    let projection = names
        .into_iter()
        .map(|n| ast::SelectItem::ExprWithAlias {
            expr: Expr::Cast {
                kind: CastKind::Cast,
                expr: Box::new(Expr::value(Value::Null)),
                data_type: ast::DataType::Text,
                array: false,
                format: None,
            },
            alias: Ident::with_quote('"', n),
        })
        .collect();
    let mut blank = select.clone();
    blank.projection = projection;
    blank.from = Vec::new();
    blank.selection = Some(Expr::value(Value::Boolean(false)));
    blank.group_by = ast::GroupByExpr::Expressions(Vec::new(), Vec::new());
    blank.having = None;
    blank.distinct = None;
    query.body = Box::new(ast::SetExpr::Select(blank));
    query.order_by = None;
    query.limit_clause = None;
}

fn aggregate_catalog_subquery(query: &mut ast::Query) {
    let reads_catalog = reads_catalog(&query.body);
    let ast::SetExpr::Select(select) = query.body.as_mut() else { return };
    if !reads_catalog || select.group_by != ast::GroupByExpr::Expressions(Vec::new(), Vec::new()) {
        return;
    }
    if let [item] = select.projection.as_mut_slice() {
        let expr = match item {
            ast::SelectItem::UnnamedExpr(e) | ast::SelectItem::ExprWithAlias { expr: e, .. } => e,
            _ => return,
        };
        if matches!(expr, Expr::Function(f) if last_part(&f.name) == "max" || last_part(&f.name) == "count") {
            return;
        }
        let inner = std::mem::replace(expr, Expr::value(Value::Null));
        *expr = call("max", vec![inner]);
    }
}

/// A call of the function `name` with `args`.
fn call(name: &str, args: Vec<Expr>) -> Expr {
    Expr::Function(ast::Function {
        name: ObjectName::from(vec![Ident::new(name)]),
        uses_odbc_syntax: false,
        parameters: ast::FunctionArguments::None,
        args: ast::FunctionArguments::List(ast::FunctionArgumentList {
            duplicate_treatment: None,
            args: args.into_iter().map(|a| ast::FunctionArg::Unnamed(ast::FunctionArgExpr::Expr(a))).collect(),
            clauses: Vec::new(),
        }),
        filter: None,
        null_treatment: None,
        over: None,
        within_group: Vec::new(),
    })
}

/// The last part of a name, lower-cased (`pg_catalog.text` -> `text`).
fn last_part(name: &ObjectName) -> String {
    match name.0.last() {
        Some(ObjectNamePart::Identifier(id)) => id.value.to_ascii_lowercase(),
        _ => String::new(),
    }
}

fn number(n: i64) -> Expr {
    Expr::value(Value::Number(n.to_string(), false))
}

fn rewrite_expr(e: &mut Expr) {
    match e {
        Expr::Collate { expr, .. } => {
            let inner = std::mem::replace(expr.as_mut(), Expr::value(Value::Null));
            *e = inner;
            rewrite_expr(e);
        }
        Expr::BinaryOp { op: op @ BinaryOperator::PGCustomBinaryOperator(_), .. } => {
            if let BinaryOperator::PGCustomBinaryOperator(parts) = op {
                let new = match parts.last().map(String::as_str) {
                    Some("~") => Some(BinaryOperator::PGRegexMatch),
                    Some("~*") => Some(BinaryOperator::PGRegexIMatch),
                    Some("!~") => Some(BinaryOperator::PGRegexNotMatch),
                    Some("!~*") => Some(BinaryOperator::PGRegexNotIMatch),
                    Some("=") => Some(BinaryOperator::Eq),
                    Some("<>") => Some(BinaryOperator::NotEq),
                    _ => None,
                };
                if let Some(new) = new {
                    *op = new;
                }
            }
        }
        // psql's `(SELECT c.collname FROM pg_catalog.pg_collation c ... WHERE <correlated>)`:
        // DataFusion plans a correlated scalar subquery only when it aggregates; over the
        // catalog at most one row matches, so `max` is the same answer.
        Expr::Subquery(query) => {
            if is_empty(&query.body) {
                *e = Expr::value(Value::Null);
            } else {
                aggregate_catalog_subquery(query);
            }
        }
        // Over a relation with no rows, `EXISTS` is false and `IN` holds for nothing.
        Expr::Exists { subquery, negated } if is_empty(&subquery.body) => {
            *e = Expr::value(Value::Boolean(*negated));
        }
        Expr::InSubquery { subquery, negated, .. } if is_empty(&subquery.body) => {
            *e = Expr::value(Value::Boolean(*negated));
        }
        // Who is connected: the catalog's one owner (sign-in is Vitals' own).
        Expr::Identifier(id)
            if id.quote_style.is_none()
                && ["current_user", "session_user", "current_role"]
                    .contains(&id.value.to_ascii_lowercase().as_str()) =>
        {
            *e = Expr::value(Value::SingleQuotedString(OWNER.to_owned()));
        }
        // `(current_schemas(true))[1]`: the first schema of the search path (no arrays here).
        Expr::CompoundFieldAccess { root, access_chain } if access_chain.len() == 1 => {
            let mut r = root.as_ref();
            while let Expr::Nested(inner) = r {
                r = inner;
            }
            if matches!(r, Expr::Function(f) if last_part(&f.name) == "current_schemas") {
                *e = Expr::value(Value::SingleQuotedString("public".to_owned()));
            }
        }
        Expr::Function(f)
            if matches!(f.args, ast::FunctionArguments::None)
                && ["current_user", "session_user", "current_role", "user"].contains(&last_part(&f.name).as_str()) =>
        {
            *e = Expr::value(Value::SingleQuotedString(OWNER.to_owned()));
        }
        Expr::Function(f) => {
            if f.name.0.len() == 2
                && matches!(&f.name.0[0], ObjectNamePart::Identifier(id) if id.value.eq_ignore_ascii_case("pg_catalog"))
            {
                f.name.0.remove(0);
            }
        }
        Expr::Cast { expr, data_type, .. } => {
            let ty = match data_type {
                ast::DataType::Custom(name, _) => last_part(name),
                ast::DataType::Regclass => "regclass".to_owned(),
                _ => return,
            };
            let literal = match expr.as_ref() {
                Expr::Value(v) => match &v.value {
                    Value::SingleQuotedString(s) | Value::EscapedStringLiteral(s) => Some(s.clone()),
                    _ => None,
                },
                _ => None,
            };
            match (ty.as_str(), literal) {
                ("regclass", Some(rel)) => {
                    let rel = rel.rsplit('.').next().unwrap_or("").trim_matches('"').to_owned();
                    let oid = CATALOG_RELATIONS
                        .iter()
                        .find(|c| c.0 == rel)
                        .map(|c| c.1)
                        .or_else(|| table_oid(&rel))
                        .unwrap_or(0);
                    *e = number(oid);
                }
                ("regtype", Some(t)) => {
                    let oid = TYPES.iter().find(|x| x.1 == t).map_or(0, |x| x.0);
                    *e = number(oid);
                }
                ("regtype", None) => {
                    let inner = std::mem::replace(expr.as_mut(), Expr::value(Value::Null));
                    *e = call("format_type", vec![inner, Expr::value(Value::Null)]);
                }
                ("regclass" | "regproc" | "regnamespace" | "regrole" | "oid" | "xid", _) => {
                    *e = Expr::Cast {
                        kind: CastKind::Cast,
                        expr: Box::new(std::mem::replace(expr.as_mut(), Expr::value(Value::Null))),
                        data_type: ast::DataType::BigInt(None),
                        array: false,
                        format: None,
                    };
                }
                ("text" | "name" | "char" | "bpchar" | "varchar", _) => {
                    *e = Expr::Cast {
                        kind: CastKind::Cast,
                        expr: Box::new(std::mem::replace(expr.as_mut(), Expr::value(Value::Null))),
                        data_type: ast::DataType::Text,
                        array: false,
                        format: None,
                    };
                }
                _ => {}
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::sql::parser::{DFParser, Statement as DFStatement};

    fn rewritten(sql: &str) -> String {
        let mut s = DFParser::parse_sql_with_dialect(sql, &PostgreSqlDialect {}).expect("parses");
        match s.pop_front() {
            Some(DFStatement::Statement(mut st)) => {
                rewrite(&mut st);
                st.to_string()
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn postgresql_only_syntax_becomes_what_datafusion_plans() {
        let cases = [
            (
                "SELECT c.oid FROM pg_catalog.pg_class c WHERE c.relname OPERATOR(pg_catalog.~) '^(samples)$' COLLATE pg_catalog.default AND pg_catalog.pg_table_is_visible(c.oid)",
                "SELECT c.oid FROM pg_catalog.pg_class c WHERE c.relname ~ '^(samples)$' AND pg_table_is_visible(c.oid)",
            ),
            (
                "SELECT d.description FROM pg_description d WHERE d.classoid = 'pg_class'::regclass AND d.objoid = 'samples'::regclass",
                "SELECT d.description FROM pg_catalog.pg_description d WHERE d.classoid = 1259 AND d.objoid = 16385",
            ),
            (
                "SELECT c.reloftype::pg_catalog.regtype::pg_catalog.text FROM pg_class c",
                "SELECT CAST(format_type(c.reloftype, NULL) AS TEXT) FROM pg_catalog.pg_class c",
            ),
            ("SELECT db.oid, db.* FROM pg_catalog.pg_database db", "SELECT db.* FROM pg_catalog.pg_database db"),
            ("SELECT current_schema(), session_user", "SELECT current_schema(), 'vitals'"),
            ("SELECT (pg_catalog.current_schemas(true))[1]", "SELECT 'public'"),
            ("SHOW search_path", "SELECT 'public' AS \"search_path\""),
            // Subqueries over relations that Vitals has none of are answered without them.
            (
                "SELECT a.attname, (SELECT d.adbin FROM pg_catalog.pg_attrdef d WHERE d.adrelid = a.attrelid) FROM pg_catalog.pg_attribute a WHERE EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = a.attrelid)",
                "SELECT a.attname, NULL FROM pg_catalog.pg_attribute a WHERE false",
            ),
            (
                "SELECT pol.polname, pg_catalog.array_to_string(array(select rolname from pg_catalog.pg_roles), ',') FROM pg_catalog.pg_policy pol WHERE pol.polrelid = '16385' ORDER BY 1",
                "SELECT CAST(NULL AS TEXT) AS \"polname\", CAST(NULL AS TEXT) AS \"column2\" WHERE false",
            ),
            // A correlated lookup in the catalog that may hold rows is aggregated.
            (
                "SELECT (SELECT t.typname FROM pg_catalog.pg_type t WHERE t.oid = a.atttypid) FROM pg_catalog.pg_attribute a",
                "SELECT (SELECT max(t.typname) FROM pg_catalog.pg_type t WHERE t.oid = a.atttypid) FROM pg_catalog.pg_attribute a",
            ),
        ];
        for (sql, want) in cases {
            assert_eq!(rewritten(sql), want, "{sql}");
        }
    }

    #[test]
    fn only_queries_that_may_read_the_catalog_take_the_catalog_path() {
        assert!(wanted("SELECT * FROM pg_catalog.pg_class"));
        assert!(wanted("select version()"));
        assert!(!wanted("SELECT patient, avg(value) FROM samples GROUP BY patient"));
    }
}
