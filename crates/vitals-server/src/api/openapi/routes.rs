//! What the route table does not know about each route: query parameters, bodies,
//! success codes and answers (see the parent module).

use axum::http::Method;
use serde_json::json;

use super::*;

pub(super) fn describe_route(method: &Method, path: &str) -> Option<Doc> {
    use Answer::*;
    let m = method.as_str();
    let range = || vec![("from", time(), false), ("to", time(), false)];
    if path == "/nightscout/{patient}/api/v2/authorization/request/{token}" {
        let summary = "Nightscout: the token exchange of API v3 clients (answers the token as an opaque bearer)";
        return Some(doc(summary, "nightscout", vec![], vec![], &[200], Json));
    }
    if let Some(rest) = path.strip_prefix("/nightscout/{patient}/api/v3/") {
        let search = || {
            vec![
                ("limit", count(), false),
                ("skip", count(), false),
                ("sort", string(), false),
                ("sort$desc", string(), false),
                ("fields", string(), false),
                ("date$gt", string(), false),
                ("date$gte", string(), false),
                ("date$lt", string(), false),
                ("date$lte", string(), false),
            ]
        };
        let object = || vec![("application/json", json!({"type": "object"}))];
        return Some(match (m, rest) {
            ("GET", "version") => doc("Nightscout v3: version", "nightscout", vec![], vec![], &[200], Json),
            ("GET", "status") => {
                doc("Nightscout v3: version and the caller's rights", "nightscout", vec![], vec![], &[200], Json)
            }
            ("GET", "lastModified") => {
                doc("Nightscout v3: when each collection last changed", "nightscout", vec![], vec![], &[200], Json)
            }
            ("GET", "{collection}") => doc(
                "Nightscout v3: search a collection (entries, devicestatus, treatments, profile)",
                "nightscout",
                search(),
                vec![],
                &[200],
                Json,
            ),
            ("POST", "{collection}") => {
                doc("Nightscout v3: create a document", "nightscout", vec![], object(), &[200, 201], Json)
            }
            ("GET", "{collection}/history" | "{collection}/history/{since}") => doc(
                "Nightscout v3: documents changed since a time (ms), deleted ones too",
                "nightscout",
                vec![("limit", count(), false), ("fields", string(), false)],
                vec![],
                &[200],
                Json,
            ),
            ("GET", "{collection}/{identifier}") => doc(
                "Nightscout v3: one document (410 once deleted)",
                "nightscout",
                vec![("fields", string(), false)],
                vec![],
                &[200],
                Json,
            ),
            ("PUT", "{collection}/{identifier}") => {
                doc("Nightscout v3: replace a document", "nightscout", vec![], object(), &[200, 201], Json)
            }
            ("PATCH", "{collection}/{identifier}") => {
                doc("Nightscout v3: change fields of a document", "nightscout", vec![], object(), &[200], Json)
            }
            ("DELETE", "{collection}/{identifier}") => doc(
                "Nightscout v3: delete a document (kept as deleted for sync)",
                "nightscout",
                vec![],
                vec![],
                &[200],
                Json,
            ),
            _ => return None,
        });
    }
    if let Some(rest) = path.strip_prefix("/nightscout/{patient}/api/v1/") {
        let entries = || json!({"oneOf": [{"type": "array", "items": {"type": "object"}}, {"type": "object"}]});
        let find = || {
            vec![
                ("count", count(), false),
                ("find[date][$gte]", string(), false),
                ("find[date][$lte]", string(), false),
            ]
        };
        let treatment_find = || {
            vec![
                ("count", count(), false),
                ("find[created_at][$gte]", string(), false),
                ("find[created_at][$lte]", string(), false),
                ("find[eventType]", string(), false),
            ]
        };
        return Some(match (m, rest) {
            ("POST", "entries" | "entries.json") => doc(
                "Nightscout: upload entries (sgv, mbg)",
                "nightscout",
                vec![],
                json_body(entries()),
                &[200],
                JsonArrayOrObject,
            ),
            ("GET", "entries" | "entries.json") => {
                doc("Nightscout: recent entries", "nightscout", find(), vec![], &[200], JsonArrayOrObject)
            }
            ("GET", "entries/sgv.json" | "entries/sgv") => {
                doc("Nightscout: sensor glucose entries", "nightscout", find(), vec![], &[200], JsonArrayOrObject)
            }
            ("GET", "entries/mbg.json") => {
                doc("Nightscout: meter readings", "nightscout", find(), vec![], &[200], JsonArrayOrObject)
            }
            ("GET", "entries/current.json") => {
                doc("Nightscout: the newest entry", "nightscout", vec![], vec![], &[200], JsonArrayOrObject)
            }
            ("POST", "devicestatus" | "devicestatus.json") => doc(
                "Nightscout: uploader and pump status",
                "nightscout",
                vec![],
                json_body(entries()),
                &[200],
                JsonArrayOrObject,
            ),
            ("GET", "devicestatus" | "devicestatus.json") => doc(
                "Nightscout: uploader, pump and loop statuses as sent, newest first",
                "nightscout",
                vec![
                    ("count", count(), false),
                    ("find[created_at][$gte]", string(), false),
                    ("find[created_at][$lte]", string(), false),
                    ("find[device]", string(), false),
                ],
                vec![],
                &[200],
                JsonArrayOrObject,
            ),
            ("POST" | "PUT", "treatments" | "treatments.json") => {
                doc("Nightscout: treatments", "nightscout", vec![], json_body(entries()), &[200], JsonArrayOrObject)
            }
            ("GET", "treatments" | "treatments.json") => doc(
                "Nightscout: treatments as sent, newest first (304 when unchanged: ETag, If-Modified-Since)",
                "nightscout",
                treatment_find(),
                vec![],
                &[200, 304],
                JsonArrayOrObject,
            ),
            ("POST" | "PUT", "profile" | "profile.json") => doc(
                "Nightscout: upload a profile (basal rates, ratios, targets)",
                "nightscout",
                vec![],
                json_body(entries()),
                &[200],
                JsonArrayOrObject,
            ),
            ("GET", "profile" | "profile.json") => doc(
                "Nightscout: profiles as uploaded, newest first",
                "nightscout",
                vec![("count", count(), false)],
                vec![],
                &[200],
                JsonArrayOrObject,
            ),
            ("POST", "activity" | "activity.json") => doc(
                "Nightscout: xDrip+ activity (hr-bpm also a heart_rate reading, steps-total, motion-class)",
                "nightscout",
                vec![],
                json_body(entries()),
                &[200],
                JsonArrayOrObject,
            ),
            ("GET", "activity" | "activity.json") => doc(
                "Nightscout: activity records as sent, newest first",
                "nightscout",
                vec![("count", count(), false), ("find[created_at][$gte]", string(), false)],
                vec![],
                &[200],
                JsonArrayOrObject,
            ),
            ("POST", "food" | "food.json") => doc(
                "Nightscout: foods of the food database",
                "nightscout",
                vec![],
                json_body(entries()),
                &[200],
                JsonArrayOrObject,
            ),
            ("GET", "food" | "food.json") => doc(
                "Nightscout: the food database",
                "nightscout",
                vec![("count", count(), false)],
                vec![],
                &[200],
                JsonArrayOrObject,
            ),
            ("DELETE", "{collection}/{id}") => doc(
                "Nightscout: delete a treatment, device status, entry or food by its _id (kept as deleted for sync)",
                "nightscout",
                vec![],
                vec![],
                &[200],
                JsonArrayOrObject,
            ),
            ("GET", "status.json" | "status") => {
                doc("Nightscout: site status", "nightscout", vec![], vec![], &[200], JsonArrayOrObject)
            }
            _ => return None,
        });
    }
    let line_protocol = || {
        vec![
            ("text/plain", json!({"type": "string"})),
            ("application/octet-stream", json!({"type": "string", "format": "binary"})),
        ]
    };
    let precision = || json!({"type": "string", "enum": ["n", "ns", "u", "us", "ms", "s", "m", "h"]});
    Some(match (m, path) {
        ("GET", "/metrics") => doc("Prometheus metrics", "system", vec![], vec![], &[200], Text),
        ("GET", "/api/v1/system") => doc("Storage, ingest and alerting state", "system", vec![], vec![], &[200], Json),
        ("GET", "/api/v1/file-drop") => {
            doc("The file-drop ledger, newest first", "system", vec![("limit", count(), false)], vec![], &[200], Json)
        }
        ("GET", "/api/v1/devices") => doc("Devices and their certificates", "people", vec![], vec![], &[200], Json),
        ("DELETE", "/api/v1/devices/{id}") => doc("Revoke a device", "people", vec![], vec![], &[204], Empty),
        ("GET", "/api/v1/openapi.json") => doc("This document", "system", vec![], vec![], &[200], Json),
        ("POST", "/api/v1/samples") => doc(
            "Write samples (JSON array or {\"samples\": [...]}, NDJSON, CSV); answered once durable",
            "ingest",
            vec![("patient", string(), false)],
            vec![
                (
                    "application/json",
                    json!({"oneOf": [
                        {"type": "array", "items": sample()},
                        {"type": "object", "required": ["samples"], "properties": {"samples": {"type": "array", "items": sample()}}}
                    ]}),
                ),
                ("application/x-ndjson", string()),
                ("text/csv", string()),
            ],
            &[200],
            Json,
        ),
        ("POST", "/api/v1/ingest/health-auto-export") => doc(
            "Health Auto Export REST JSON",
            "ingest",
            vec![("patient", string(), false)],
            json_body(json!({"type": "object", "properties": {"data": {"type": "object"}}})),
            &[200],
            Json,
        ),
        ("POST", "/api/v1/ingest/file") => doc(
            "Upload one file of any format Vitals reads (FIT, Gadgetbridge, Fitbit Takeout, Apple Health export.xml or export.zip, E4, Health Auto Export, native)",
            "ingest",
            vec![
                ("patient", string(), false),
                ("name", string(), false),
                ("format", json!({"type": "string", "enum": crate::source::file::NAMED_FORMATS}), false),
            ],
            vec![("application/octet-stream", json!({"type": "string", "format": "binary"}))],
            &[200],
            Json,
        ),
        ("POST", "/write") => doc(
            "InfluxDB 1.x line protocol",
            "ingest",
            vec![
                ("db", string(), true),
                ("precision", precision(), false),
                ("u", string(), false),
                ("p", string(), false),
            ],
            line_protocol(),
            &[204],
            Empty,
        ),
        ("POST", "/api/v2/write") => doc(
            "InfluxDB 2.x line protocol",
            "ingest",
            vec![("bucket", string(), true), ("org", string(), false), ("precision", precision(), false)],
            line_protocol(),
            &[204],
            Empty,
        ),
        ("GET", "/api/v1/metrics") => doc("The metric catalog", "series", vec![], vec![], &[200], Json),
        ("GET", "/api/v1/patients") => doc("Patients one may see", "patients", vec![], vec![], &[200], Json),
        ("POST", "/api/v1/patients") => doc(
            "Register a patient (answers a new pseudonym)",
            "patients",
            vec![],
            json_body(json!({"type": "object", "properties": {"team": {"type": "string"}, "identity": identity()}})),
            &[201],
            Json,
        ),
        ("GET", "/api/v1/patients/{patient}/identity") => {
            doc("A patient's identity (audited)", "patients", vec![], vec![], &[200], Json)
        }
        ("PUT", "/api/v1/patients/{patient}/identity") => {
            doc("Set a patient's identity", "patients", vec![], json_body(identity()), &[200], Json)
        }
        ("GET", "/api/v1/patients/{patient}/export") => {
            doc("Everything stored about a patient, as a zip archive", "patients", vec![], vec![], &[200], Zip)
        }
        ("DELETE", "/api/v1/patients/{patient}") => {
            doc("Erase a patient everywhere", "patients", vec![], vec![], &[200], Json)
        }
        ("GET", "/api/v1/patients/{patient}/events") => {
            let mut q = range();
            q.push(("kind", string(), false));
            doc("A patient's events", "series", q, vec![], &[200], Json)
        }
        ("GET", "/api/v1/patients/{patient}/latest") => {
            doc("The newest reading of each metric", "series", vec![], vec![], &[200], Json)
        }
        ("GET", "/api/v1/patients/{patient}/devices") => {
            doc("The patient's devices: last heard, battery, signal, stale", "series", vec![], vec![], &[200], Json)
        }
        ("GET", "/api/v1/patients/{patient}/connections") => doc(
            "The patient's vendor cloud connections and their sync state (never the credentials)",
            "sources",
            vec![],
            vec![],
            &[200],
            Json,
        ),
        ("PUT", "/api/v1/patients/{patient}/connections/{vendor}") => doc(
            "Connect a vendor account (Dexcom Share, LibreLinkUp); the credentials are sealed by the vault",
            "sources",
            vec![],
            json_body(json!({"type": "object", "required": ["username", "password"], "properties": {
                "username": {"type": "string"}, "password": {"type": "string"},
                "region": {"type": "string"}, "follow": {"type": "string"}}})),
            &[200, 201],
            Json,
        ),
        ("DELETE", "/api/v1/patients/{patient}/connections/{vendor}") => {
            doc("Disconnect a vendor account and forget its credentials", "sources", vec![], vec![], &[204], Empty)
        }
        ("POST", "/api/v1/patients/{patient}/connections/{vendor}/sync") => {
            doc("Pull a vendor account now", "sources", vec![], vec![], &[202], Json)
        }
        ("POST", "/api/v1/patients/{patient}/connections/{vendor}/authorize") => doc(
            "Start connecting an OAuth vendor (Oura): its sign-in address, with a sealed state",
            "sources",
            vec![],
            vec![],
            &[200],
            Json,
        ),
        ("POST", "/api/v1/connections/oauth") => doc(
            "Finish connecting an OAuth vendor with the code and state it sent the user back with",
            "sources",
            vec![],
            json_body(json!({"type": "object", "required": ["code", "state"], "properties": {
                "code": {"type": "string"}, "state": {"type": "string"}}})),
            &[200, 201],
            Json,
        ),
        ("GET", "/api/v1/patients/{patient}/chart") => doc(
            "The dashboard's charts",
            "dashboard",
            vec![
                ("metrics", string(), true),
                ("from", time(), true),
                ("to", time(), true),
                ("width", json!({"type": "integer", "minimum": 1}), false),
            ],
            vec![],
            &[200],
            Json,
        ),
        ("GET", "/api/v1/patients/{patient}/glucose") => doc(
            "Consensus glucose metrics, variability and risk indices, and the daily profile",
            "dashboard",
            vec![
                ("from", time(), true),
                ("to", time(), true),
                ("tz_offset_min", integer(), false),
                ("tz_changes", string(), false),
            ],
            vec![],
            &[200],
            Json,
        ),
        ("GET", "/api/v1/patients/{patient}/baselines") => doc(
            "Nights, personal baselines and anomalies",
            "dashboard",
            vec![
                ("to", time(), false),
                ("days", json!({"type": "integer", "minimum": 7, "maximum": 365}), false),
                ("tz_offset_min", integer(), false),
            ],
            vec![],
            &[200],
            Json,
        ),
        ("GET", "/api/v1/patients/{patient}/profile") => doc(
            "The usual band of heart rate, skin temperature, respiratory rate and SpO2 for each hour of the day",
            "dashboard",
            vec![("metrics", string(), false), ("to", time(), false), ("tz_offset_min", integer(), false)],
            vec![],
            &[200],
            Json,
        ),
        ("GET", "/api/v1/patients/{patient}/seizures") => doc(
            "The seizure diary: detected, recorded and confirmed seizures with acknowledgements (JSON or CSV)",
            "dashboard",
            vec![
                ("from", time(), true),
                ("to", time(), true),
                ("format", json!({"type": "string", "enum": ["json", "csv"]}), false),
            ],
            vec![],
            &[200],
            JsonOrCsv,
        ),
        ("GET", "/api/v1/patients/{patient}/live") => doc(
            "Server-sent events whenever new data of the patient is durable",
            "dashboard",
            vec![("events", count(), false)],
            vec![],
            &[200],
            EventStream,
        ),
        ("GET", "/api/v1/patients/{patient}/fhir") => {
            let mut q = range();
            q.push(("metric", string(), false));
            doc("A patient's samples as a FHIR R4 Bundle", "series", q, vec![], &[200], Fhir)
        }
        ("GET", "/api/v1/patients/{patient}/series/{metric}") => {
            let mut q = range();
            for name in ["device", "every", "agg", "include", "time_format"] {
                q.push((name, string(), false));
            }
            doc("Raw points or aggregates of one metric (JSON or CSV)", "series", q, vec![], &[200], JsonOrCsv)
        }
        ("GET", "/api/v1/overview") => {
            doc("Every visible patient at a glance", "dashboard", vec![], vec![], &[200], Json)
        }
        ("GET", "/api/v1/me") => doc("Who the credentials belong to", "people", vec![], vec![], &[200], Json),
        ("DELETE", "/api/v1/session") => doc("Sign out", "people", vec![], vec![], &[204], Empty),
        ("GET", "/api/v1/users") => doc("Users", "people", vec![], vec![], &[200], Json),
        ("POST", "/api/v1/users") => doc(
            "Create a user",
            "people",
            vec![],
            json_body(json!({
                "type": "object", "required": ["name", "role"],
                "properties": {"name": {"type": "string"}, "role": role(), "password": {"type": "string"}, "patient": {"type": "string"}}
            })),
            &[201],
            Json,
        ),
        ("GET", "/api/v1/users/{user}") => doc("A user", "people", vec![], vec![], &[200], Json),
        ("PUT", "/api/v1/users/{user}") => doc(
            "Change a user (role, password, disabled, patient)",
            "people",
            vec![],
            json_body(any_object()),
            &[200],
            Json,
        ),
        ("DELETE", "/api/v1/users/{user}") => doc("Delete a user", "people", vec![], vec![], &[204], Empty),
        ("GET", "/api/v1/teams") => doc("Care teams", "people", vec![], vec![], &[200], Json),
        ("PUT", "/api/v1/teams/{team}") => doc(
            "Create or replace a care team",
            "people",
            vec![],
            json_body(json!({"type": "object", "properties": {"members": strings(), "patients": strings()}})),
            &[200],
            Json,
        ),
        ("DELETE", "/api/v1/teams/{team}") => doc("Delete a care team", "people", vec![], vec![], &[204], Empty),
        ("GET", "/api/v1/audit") => doc(
            "The audit log, newest first",
            "people",
            vec![
                ("patient", string(), false),
                ("actor", string(), false),
                ("action", string(), false),
                ("from", time(), false),
                ("to", time(), false),
                ("before", integer(), false),
                ("limit", count(), false),
            ],
            vec![],
            &[200],
            Json,
        ),
        ("GET", "/api/v1/tokens") => doc("Tokens (never their secrets)", "people", vec![], vec![], &[200], Json),
        ("POST", "/api/v1/tokens") => doc(
            "Create a token (the secret is shown once)",
            "people",
            vec![],
            json_body(json!({
                "type": "object", "required": ["name"],
                "properties": {
                    "name": {"type": "string"}, "role": role(), "user": {"type": "string"},
                    "device": {"type": "string"}, "patient": {"type": "string"}, "expires_in": {"type": "string"}
                }
            })),
            &[201],
            Json,
        ),
        ("DELETE", "/api/v1/tokens/{id}") => doc("Revoke a token", "people", vec![], vec![], &[204], Empty),
        ("GET", "/api/v1/dead-letters") => doc(
            "Refused input kept for inspection",
            "dead letters",
            vec![("after", count(), false), ("limit", count(), false)],
            vec![],
            &[200],
            Json,
        ),
        ("DELETE", "/api/v1/dead-letters") => {
            doc("Purge every dead letter", "dead letters", vec![], vec![], &[200], Json)
        }
        ("GET", "/api/v1/dead-letters/{id}") => doc("One dead letter", "dead letters", vec![], vec![], &[200], Json),
        ("DELETE", "/api/v1/dead-letters/{id}") => {
            doc("Remove one dead letter", "dead letters", vec![], vec![], &[204], Empty)
        }
        ("POST", "/api/v1/dead-letters/{id}/replay") => {
            doc("Decode a dead letter again with today's rules", "dead letters", vec![], vec![], &[200], Json)
        }
        ("GET", "/api/v1/alerts") => doc(
            "Alerts, newest first",
            "alerts",
            vec![
                ("patient", string(), false),
                ("state", json!({"type": "string", "enum": ["open", "acknowledged", "resolved", "retracted"]}), false),
                ("from", time(), false),
                ("to", time(), false),
                ("limit", count(), false),
            ],
            vec![],
            &[200],
            Json,
        ),
        ("GET", "/api/v1/alerts/{id}") => doc("One alert", "alerts", vec![], vec![], &[200], Json),
        ("POST", "/api/v1/alerts/{id}/ack") => doc("Acknowledge an alert", "alerts", vec![], vec![], &[200], Json),
        ("POST", "/api/v1/alerts/{id}/snooze") => doc(
            "Snooze an alert's reminders",
            "alerts",
            vec![],
            json_body(json!({"type": "object", "required": ["for"], "properties": {"for": {"type": "string"}}})),
            &[200],
            Json,
        ),
        ("GET", "/api/v1/notifications") => doc(
            "The outbox and its dead-letter list",
            "notifications",
            vec![
                ("state", json!({"type": "string", "enum": ["pending", "delivered", "dead", "withdrawn"]}), false),
                ("alert", string(), false),
                ("limit", count(), false),
            ],
            vec![],
            &[200],
            Json,
        ),
        ("POST", "/api/v1/notifications/test") => doc(
            "Send a test message to a contact",
            "notifications",
            vec![],
            json_body(
                json!({"type": "object", "required": ["contact"], "properties": {"contact": {"type": "string"}}}),
            ),
            &[202],
            Json,
        ),
        ("GET", "/api/v1/notifications/{id}") => doc("One notice", "notifications", vec![], vec![], &[200], Json),
        ("POST", "/api/v1/notifications/{id}/replay") => {
            doc("Send a dead notice again", "notifications", vec![], vec![], &[200], Json)
        }
        ("GET", "/api/v1/campaigns") => {
            doc("Campaigns, newest first, with their occurrences", "campaigns", vec![], vec![], &[200], Json)
        }
        ("POST", "/api/v1/campaigns") => doc(
            "Create a campaign: a message to a cohort's opted-in members, once or every so often",
            "campaigns",
            vec![],
            json_body(json!({
                "type": "object", "required": ["name", "cohort", "subject", "message"], "additionalProperties": false,
                "properties": {
                    "name": {"type": "string"}, "cohort": {"type": "string"}, "subject": {"type": "string"},
                    "message": {"type": "string"}, "start": {"type": ["string", "integer"]},
                    "every": {"type": "string"}, "until": {"type": ["string", "integer"]}
                }
            })),
            &[201],
            Json,
        ),
        ("GET", "/api/v1/campaigns/{id}") => doc(
            "One campaign with each occurrence's sends (patients reached only) and their delivery",
            "campaigns",
            vec![],
            vec![],
            &[200],
            Json,
        ),
        ("POST", "/api/v1/campaigns/{id}/cancel") => {
            doc("Cancel a campaign: nothing more is sent", "campaigns", vec![], vec![], &[200], Json)
        }
        ("GET", "/api/v1/patients/{patient}/campaigns") => doc(
            "A patient's consent to campaigns, the channels they could choose, and the messages sent to them",
            "campaigns",
            vec![],
            vec![],
            &[200],
            Json,
        ),
        ("PUT", "/api/v1/patients/{patient}/campaigns") => doc(
            "Give consent to campaigns on a channel (email, sms, telegram), or withdraw it (null)",
            "campaigns",
            vec![],
            json_body(json!({
                "type": "object", "required": ["channel"], "additionalProperties": false,
                "properties": {"channel": {"type": ["string", "null"], "enum": ["email", "sms", "telegram", null]}}
            })),
            &[200],
            Json,
        ),
        ("GET", "/api/v1/cohorts") => doc("Cohorts", "cohorts", vec![], vec![], &[200], Json),
        ("GET", "/api/v1/cohorts/{name}") => doc("One cohort", "cohorts", vec![], vec![], &[200], Json),
        ("PUT", "/api/v1/cohorts/{name}") => doc(
            "Create or replace a cohort",
            "cohorts",
            vec![],
            json_body(json!({"type": "object", "required": ["patients"], "properties": {"patients": strings()}})),
            &[200, 201],
            Json,
        ),
        ("DELETE", "/api/v1/cohorts/{name}") => doc("Delete a cohort", "cohorts", vec![], vec![], &[204], Empty),
        ("GET", "/api/v1/rules") => doc("Alert rules", "rules", vec![], vec![], &[200], Json),
        ("POST", "/api/v1/rules") => doc("Create a rule", "rules", vec![], json_body(rule_spec()), &[201], Json),
        ("POST", "/api/v1/rules/backtest") => doc(
            "The episodes a rule would have produced over stored data",
            "rules",
            vec![],
            json_body(json!({
                "type": "object", "required": ["expr", "from", "to"],
                "properties": {
                    "expr": {"type": "string"}, "clear": {"type": "string"}, "for": {"type": "string"},
                    "patients": strings(), "from": {"type": ["string", "integer"]}, "to": {"type": ["string", "integer"]}
                }
            })),
            &[200],
            Json,
        ),
        ("GET", "/api/v1/rules/{name}") => doc("One rule", "rules", vec![], vec![], &[200], Json),
        ("PUT", "/api/v1/rules/{name}") => {
            doc("Create or replace a rule", "rules", vec![], json_body(rule_spec()), &[200, 201], Json)
        }
        ("DELETE", "/api/v1/rules/{name}") => doc("Delete a rule", "rules", vec![], vec![], &[204], Empty),
        ("POST", "/api/v1/sql") => {
            let format = json!({"type": "string", "enum": ["json", "csv", "arrow", "parquet"]});
            let body = json!({"type": "object", "required": ["sql"], "additionalProperties": false,
                "properties": {"sql": {"type": "string", "minLength": 1}, "format": format.clone()}});
            let text = ("application/sql", json!({"type": "string", "minLength": 1}));
            let summary = "Run SQL over pseudonymous data (rows of the caller's patients only)";
            doc(summary, "sql", vec![("format", format, false)], vec![("application/json", body), text], &[200], Table)
        }
        ("GET", "/api/v1/fhir/$export" | "/api/v1/fhir/Patient/$export" | "/api/v1/fhir/Group/{name}/$export") => {
            let q = vec![
                ("_outputFormat", string(), false),
                ("_since", time(), false),
                ("_type", string(), false),
                ("metric", string(), false),
            ];
            let summary = "FHIR Bulk Data kick-off: 202 with the status URL in Content-Location";
            doc(summary, "fhir", q, vec![], &[202], Empty)
        }
        ("GET", "/api/v1/fhir/$export-status/{id}") => {
            doc("A bulk export's status (202 while running) or its manifest", "fhir", vec![], vec![], &[200, 202], Json)
        }
        ("DELETE", "/api/v1/fhir/$export-status/{id}") => {
            doc("Cancel a bulk export or remove its files", "fhir", vec![], vec![], &[202], Empty)
        }
        ("GET", "/api/v1/fhir/$export-file/{id}/{file}") => {
            doc("One NDJSON file of a finished bulk export", "fhir", vec![], vec![], &[200], FhirNdjson)
        }
        _ => return None,
    })
}
