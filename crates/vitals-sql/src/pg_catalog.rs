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

use std::sync::Arc;

use datafusion::arrow::array::{
    ArrayRef, BooleanArray, Float64Array, Int64Array, RecordBatch, StringArray, new_null_array,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::catalog::{MemorySchemaProvider, SchemaProvider};
use datafusion::common::Result;
use datafusion::datasource::MemTable;
use datafusion::logical_expr::ScalarUDF;
use datafusion::prelude::SessionContext;

mod functions;
mod rewrite;

use functions::PgFunction;
pub use functions::VERSION;
pub(crate) use rewrite::rewrite;

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

pub(super) const FIRST_TABLE_OID: i64 = 16385;
const DATABASE_OID: i64 = 16384;
const NS_CATALOG: i64 = 11;
const NS_PUBLIC: i64 = 2200;
const NS_INFORMATION_SCHEMA: i64 = 13000;
/// The owner of everything (`pg_get_userbyid`).
const OWNER_OID: i64 = 10;
pub(super) const OWNER: &str = "vitals";

/// PostgreSQL's oids of its catalog relations, for `'pg_class'::regclass`.
pub(super) const CATALOG_RELATIONS: [(&str, i64); 8] = [
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
pub(super) const TYPES: [(i64, &str, i64, &str); 11] = [
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
pub(super) fn type_name(oid: i64) -> Option<&'static str> {
    TYPES.iter().find(|t| t.0 == oid).map(|t| t.3)
}

/// The statements of `sql` (PostgreSQL dialect) after [`rewrite`], as SQL text; empty when
/// it does not parse. For fuzzing and for seeing what a client's catalog query becomes.
pub fn rewrite_sql(sql: &str) -> Vec<String> {
    use datafusion::sql::parser::{DFParser, Statement as DFStatement};
    use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
    if crate::too_deep(sql).is_err() {
        return Vec::new();
    }
    let Ok(statements) = DFParser::parse_sql_with_dialect(sql, &PostgreSqlDialect {}) else { return Vec::new() };
    statements
        .into_iter()
        .map(|s| match s {
            DFStatement::Statement(mut st) => {
                rewrite(&mut st);
                st.to_string()
            }
            other => other.to_string(),
        })
        .collect()
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

pub(super) fn text_array(values: Vec<Option<String>>) -> ArrayRef {
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
        self.columns.push(text_array(values));
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

pub(super) fn table_oid(name: &str) -> Option<i64> {
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
pub(super) const EMPTY_TABLES: [(&str, &[&str]); 18] = [
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
pub(super) const SETTINGS: [(&str, &str); 10] = [
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
