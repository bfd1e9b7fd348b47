//! PostgreSQL-only syntax of catalog queries, rewritten on the parsed statement into what
//! DataFusion plans (see the module above).

use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::{
    self, BinaryOperator, CastKind, Expr, Ident, ObjectName, ObjectNamePart, Statement, Value,
};
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::parser::Parser;

use super::{CATALOG_RELATIONS, EMPTY_TABLES, OWNER, SETTINGS, TYPES, table_oid};

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
    *query.body = ast::SetExpr::Select(blank);
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
        Expr::Function(f)
            if f.name.0.len() == 2
                && matches!(&f.name.0[0], ObjectNamePart::Identifier(id) if id.value.eq_ignore_ascii_case("pg_catalog")) =>
        {
            f.name.0.remove(0);
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
    use crate::pg_catalog::wanted;
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
