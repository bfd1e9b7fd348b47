//! The functions of the catalog: what psql and JDBC clients call while browsing.

use datafusion::arrow::array::{ArrayRef, Int64Array, StringArray, new_null_array};
use datafusion::arrow::datatypes::DataType;
use datafusion::common::{Result, ScalarValue, exec_err};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDFImpl, Signature, TypeSignature, Volatility,
};

use super::{FIRST_TABLE_OID, OWNER, SETTINGS, TABLES, text_array as text, type_name};

/// The functions of the catalog.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) enum Fun {
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
pub(super) struct PgFunction {
    fun: Fun,
    name: &'static str,
    aliases: Vec<String>,
    signature: Signature,
}

impl PgFunction {
    pub(super) const ALL: [Fun; 14] = [
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

    pub(super) fn new(fun: Fun) -> PgFunction {
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
