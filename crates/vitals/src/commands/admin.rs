//! `vitals admin user|team|patient|audit|vault`: the operator's commands, on the data
//! directory (run them on the server's machine; they take effect at the server's next
//! request). Every change is recorded in the audit log as actor `cli`.

use std::io::{BufRead, Read};
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::Subcommand;
use vitals_core::time::format_time;
use vitals_core::{Clock, SystemClock};
use vitals_meta::{AuditFilter, Patient, Role};
use vitals_vault::Identity;

use vitals_server::auth::Directory;
use vitals_server::config::Config;

#[derive(Debug, Subcommand)]
pub(crate) enum UserCommand {
    /// Create a user. The password is read from stdin with --password-stdin, otherwise a
    /// random one is printed once.
    Add {
        name: String,
        #[arg(long)]
        role: Role,
        /// For a patient account: the patient's pseudonym.
        #[arg(long)]
        patient: Option<String>,
        #[arg(long)]
        password_stdin: bool,
        /// No password (the account uses tokens only).
        #[arg(long, conflicts_with = "password_stdin")]
        no_password: bool,
    },
    /// List users.
    List,
    /// Change a user.
    Set {
        name: String,
        #[arg(long)]
        role: Option<Role>,
        /// Read a new password from stdin.
        #[arg(long)]
        password_stdin: bool,
        #[arg(long, conflicts_with = "enable")]
        disable: bool,
        #[arg(long)]
        enable: bool,
        /// Clear a sign-in lockout.
        #[arg(long)]
        unlock: bool,
    },
    /// Delete a user with their tokens, sessions and team memberships.
    Delete { name: String },
}

#[derive(Debug, Subcommand)]
pub(crate) enum TeamCommand {
    /// List care teams.
    List,
    /// Add members (users) and patients to a team, creating it if needed.
    Add {
        team: String,
        #[arg(long = "member")]
        members: Vec<String>,
        #[arg(long = "patient")]
        patients: Vec<String>,
    },
    /// Remove members and patients from a team.
    Remove {
        team: String,
        #[arg(long = "member")]
        members: Vec<String>,
        #[arg(long = "patient")]
        patients: Vec<String>,
    },
    /// Delete a team (its members and patients stay).
    Delete { team: String },
}

#[derive(Debug, Subcommand)]
pub(crate) enum PatientCommand {
    /// Register a patient: prints the new pseudonym.
    Create {
        /// Link to this care team.
        #[arg(long)]
        team: Option<String>,
        /// The identity as JSON (name, date_of_birth, contacts, external_ids, notes), from
        /// this file or `-` for stdin.
        #[arg(long)]
        identity: Option<String>,
    },
    /// List registered patients (pseudonyms only).
    List,
    /// Print a patient's identity (audited).
    Identity { patient: String },
    /// Replace a patient's identity from a JSON file (or `-` for stdin).
    SetIdentity { patient: String, file: String },
    /// Write everything about a patient (identity, samples, events, alerts, audit trail) to
    /// one zip archive.
    Export {
        patient: String,
        #[arg(long)]
        out: std::path::PathBuf,
    },
    /// Erase a patient: identity, samples (buffer, write-ahead log and every lake
    /// partition), events, alerts, notices, dead letters, tokens and team links.
    Erase {
        patient: String,
        /// Confirm: this cannot be undone.
        #[arg(long)]
        yes: bool,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum DeviceCommand {
    /// Register a device's client certificate (PEM): presenting it over mutual TLS
    /// authenticates as this device, writing for `--patient` only if given.
    Add {
        /// The device id (a serial, a MAC address...).
        device: String,
        #[arg(long)]
        cert: std::path::PathBuf,
        #[arg(long)]
        patient: Option<String>,
        /// A display name (default: the device id).
        #[arg(long)]
        name: Option<String>,
    },
    /// List registered device certificates.
    List,
    /// Revoke a device certificate by id; it is refused at the next connection.
    Revoke { id: String },
}

#[derive(Debug, Subcommand)]
pub(crate) enum AuditCommand {
    /// Check the hash chain of the whole log; prints the entry count and head hash.
    Verify {
        /// Also require this head hash (one recorded earlier, kept elsewhere): detects a
        /// log rewritten from the start.
        #[arg(long)]
        head: Option<String>,
    },
    /// Show entries, newest first.
    List {
        #[arg(long)]
        patient: Option<String>,
        #[arg(long)]
        actor: Option<String>,
        /// An action, or a prefix ending in "." (login.).
        #[arg(long)]
        action: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum VaultCommand {
    /// Key ids in the key ring and how many records each seals.
    Status,
    /// Rotation step 1: add a new primary key at the top of the key file.
    NewKey { id: String },
    /// Rotation step 2: re-seal every record under the primary key.
    Rotate,
    /// Rotation step 3: remove an old key from the key file (refused while it seals records).
    RetireKey { id: String },
}

/// Records a command's change in the audit log.
pub(crate) fn cli_audit(d: &Directory, action: &str, patient: Option<&str>, target: &str) -> anyhow::Result<()> {
    d.meta().append_audit(&vitals_meta::AuditEvent {
        ts_ms: SystemClock.now_ms(),
        actor: "cli".into(),
        action: action.into(),
        patient: patient.map(str::to_owned),
        target: target.into(),
        origin: "cli".into(),
        outcome: "ok".into(),
    })?;
    Ok(())
}

fn read_password() -> anyhow::Result<String> {
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line).context("reading the password from stdin")?;
    Ok(line.trim_end_matches(['\n', '\r']).to_owned())
}

fn read_json_arg(arg: &str) -> anyhow::Result<Identity> {
    let text = if arg == "-" {
        let mut s = String::new();
        std::io::stdin().read_to_string(&mut s)?;
        s
    } else {
        std::fs::read_to_string(arg).with_context(|| format!("reading {arg}"))?
    };
    serde_json::from_str(&text)
        .context("an identity: {\"name\", \"date_of_birth\", \"contacts\", \"external_ids\", \"notes\"}")
}

pub(crate) fn user(config: &Config, cmd: UserCommand) -> anyhow::Result<ExitCode> {
    let d = Directory::open_for(config)?;
    let now = SystemClock.now_ms();
    match cmd {
        UserCommand::Add { name, role, patient, password_stdin, no_password } => {
            let (password, shown) = if password_stdin {
                (Some(read_password()?), false)
            } else if no_password {
                (None, false)
            } else {
                (Some(vitals_meta::random_secret("")?[..20].to_owned()), true)
            };
            let u = d.create_user(&name, role, password.as_deref(), patient.as_deref(), now)?;
            cli_audit(&d, "user.create", None, &format!("user {}", u.name))?;
            eprintln!("created {} {} ({})", u.role, u.name, u.id);
            if shown && let Some(p) = password {
                eprintln!("password (shown only this once):");
                println!("{p}");
            }
        }
        UserCommand::List => {
            for u in d.meta().users()? {
                let mut flags = Vec::new();
                if u.disabled {
                    flags.push("disabled".to_string());
                }
                if let Some(t) = u.locked_until_ms.filter(|t| *t > now) {
                    flags.push(format!("locked until {}", format_time(t)));
                }
                if let Some(p) = &u.patient {
                    flags.push(format!("patient {p}"));
                }
                println!("{:<24} {:<9} {}  {}", u.name, u.role, u.id, flags.join(", "));
            }
        }
        UserCommand::Set { name, role, password_stdin, disable, enable, unlock } => {
            let change = vitals_server::people::UserChange {
                role,
                password: if password_stdin { Some(read_password()?) } else { None },
                disabled: if disable {
                    Some(true)
                } else if enable {
                    Some(false)
                } else {
                    None
                },
                unlock: unlock.then_some(true),
            };
            let u = vitals_server::people::change_user(d.meta(), &name, change)?;
            cli_audit(&d, "user.update", None, &format!("user {}", u.name))?;
            eprintln!("updated {}", u.name);
        }
        UserCommand::Delete { name } => {
            let u = d.meta().user(&name)?.with_context(|| format!("no user {name:?}"))?;
            d.meta().delete_user(&u.id)?;
            cli_audit(&d, "user.delete", None, &format!("user {}", u.name))?;
            eprintln!("deleted {}", u.name);
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn team(config: &Config, cmd: TeamCommand) -> anyhow::Result<ExitCode> {
    let d = Directory::open_for(config)?;
    let meta = d.meta();
    let now = SystemClock.now_ms();
    let current = |team: &str| -> anyhow::Result<Option<vitals_meta::Team>> {
        Ok(meta.teams()?.into_iter().find(|t| t.name == team))
    };
    let names = |ids: &[String]| -> Vec<String> {
        let mut n: Vec<String> =
            ids.iter().map(|id| meta.user(id).ok().flatten().map_or_else(|| id.clone(), |u| u.name)).collect();
        n.sort();
        n
    };
    match cmd {
        TeamCommand::List => {
            for t in meta.teams()? {
                println!("{}: members {}; patients {}", t.name, names(&t.members).join(", "), t.patients.join(", "));
            }
        }
        TeamCommand::Add { .. } | TeamCommand::Remove { .. } => {
            let adding = matches!(cmd, TeamCommand::Add { .. });
            let (TeamCommand::Add { team, members, patients } | TeamCommand::Remove { team, members, patients }) = cmd
            else {
                unreachable!("matched above")
            };
            let t = current(&team)?;
            if t.is_none() && !adding {
                bail!("no team {team:?}");
            }
            let mut m = t.as_ref().map(|t| names(&t.members)).unwrap_or_default();
            let mut p = t.map(|t| t.patients).unwrap_or_default();
            if adding {
                m.extend(members);
                p.extend(patients);
            } else {
                let drop_m: Vec<String> =
                    members.iter().map(|x| meta.user(x).ok().flatten().map_or_else(|| x.clone(), |u| u.name)).collect();
                m.retain(|x| !drop_m.contains(x));
                p.retain(|x| !patients.contains(x));
            }
            m.sort();
            m.dedup();
            p.sort();
            p.dedup();
            let t = vitals_server::people::set_team(meta, &team, &m, &p, now)?;
            cli_audit(&d, "team.update", None, &format!("team {team}"))?;
            println!("{}: members {}; patients {}", t.name, names(&t.members).join(", "), t.patients.join(", "));
        }
        TeamCommand::Delete { team } => {
            if !meta.delete_team(&team)? {
                bail!("no team {team:?}");
            }
            cli_audit(&d, "team.delete", None, &format!("team {team}"))?;
            eprintln!("deleted team {team}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn patient(config: &Config, cmd: PatientCommand) -> anyhow::Result<ExitCode> {
    let d = Directory::open_for(config)?;
    let now = SystemClock.now_ms();
    match cmd {
        PatientCommand::Create { team, identity } => {
            let identity = identity.as_deref().map(read_json_arg).transpose()?;
            if let Some(i) = &identity {
                i.validate()?;
            }
            if let Some(t) = &team
                && !d.meta().teams()?.iter().any(|x| &x.name == t)
            {
                bail!("no team {t:?}");
            }
            let id = vitals_meta::new_pseudonym()?;
            d.meta().create_patient(&Patient { id: id.clone(), created_ms: now, created_by: "cli".into() })?;
            if let Some(t) = &team {
                d.meta().set_team_patient(t, &id, true)?;
            }
            if let Some(i) = &identity {
                vitals_server::stores::open_vault(config)?.put(&id, i, now)?;
            }
            cli_audit(&d, "patient.create", Some(&id), "cli")?;
            println!("{id}");
        }
        PatientCommand::List => {
            for p in d.meta().patients()? {
                println!("{}  registered {} by {}", p.id, format_time(p.created_ms), p.created_by);
            }
        }
        PatientCommand::Identity { patient } => {
            let vault = vitals_server::stores::open_vault(config)?;
            let identity = vault.get(&patient)?.with_context(|| format!("no identity recorded for {patient:?}"))?;
            cli_audit(&d, "identity.read", Some(&patient), "cli")?;
            println!("{}", serde_json::to_string_pretty(&identity)?);
        }
        PatientCommand::SetIdentity { patient, file } => {
            vitals_core::PatientId::new(&patient).map_err(|e| anyhow::anyhow!("patient {patient:?} {e}"))?;
            let identity = read_json_arg(&file)?;
            let vault = vitals_server::stores::open_vault(config)?;
            match d.meta().create_patient(&Patient { id: patient.clone(), created_ms: now, created_by: "cli".into() }) {
                Ok(()) | Err(vitals_meta::MetaError::Conflict(_)) => {}
                Err(e) => return Err(e.into()),
            }
            vault.put(&patient, &identity, now)?;
            cli_audit(&d, "identity.update", Some(&patient), "cli")?;
            eprintln!("identity of {patient} saved");
        }
        PatientCommand::Export { patient, out } => {
            let report = vitals_server::rights::export_offline(config, &patient, &out)?;
            cli_audit(&d, "patient.export", Some(&patient), "cli")?;
            eprintln!("wrote {} ({report})", out.display());
        }
        PatientCommand::Erase { patient, yes } => {
            if !yes {
                bail!("erasing {patient} cannot be undone: add --yes (stop the server first, or use the API)");
            }
            let report = vitals_server::rights::erase_offline(config, &patient)?;
            cli_audit(&d, "patient.erase", Some(&patient), "cli")?;
            eprintln!("erased {patient}: {report}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn device(config: &Config, cmd: DeviceCommand) -> anyhow::Result<ExitCode> {
    let d = Directory::open_for(config)?;
    let now = SystemClock.now_ms();
    match cmd {
        DeviceCommand::Add { device, cert, patient, name } => {
            let certs = vitals_server::tls::read_certs(&cert)?;
            let leaf = certs.first().context("no certificate")?;
            let c =
                d.register_cert(name.as_deref().unwrap_or(&device), &device, patient.as_deref(), leaf.as_ref(), now)?;
            cli_audit(&d, "device.register", c.patient.as_deref(), &format!("device certificate {}", c.id))?;
            println!("{}  device {} sha256 {}", c.id, c.device, c.sha256);
        }
        DeviceCommand::List => {
            for c in d.meta().device_certs()? {
                let state = if c.revoked_ms.is_some() { "revoked" } else { "live" };
                let patient = c.patient.as_deref().unwrap_or("any patient");
                println!(
                    "{}  {:<7} {}  {}  {}  sha256 {}",
                    c.id,
                    state,
                    c.device,
                    patient,
                    format_time(c.created_ms),
                    c.sha256
                );
            }
        }
        DeviceCommand::Revoke { id } => {
            if !d.meta().revoke_device_cert(&id, now)? {
                bail!("no live device certificate {id:?}");
            }
            cli_audit(&d, "device.revoke", None, &format!("device certificate {id}"))?;
            eprintln!("revoked {id}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn audit(config: &Config, cmd: AuditCommand) -> anyhow::Result<ExitCode> {
    let d = Directory::open_for(config)?;
    match cmd {
        AuditCommand::Verify { head } => match vitals_meta::verify_audit(d.meta(), Some(d.audit_key())) {
            Ok((n, hash)) => {
                if let Some(h) = head
                    && !d.meta().audit_run(0, usize::MAX)?.iter().any(|e| e.hash == h)
                {
                    eprintln!("audit log: the given head {h} is not in the chain: the log was rewritten");
                    return Ok(ExitCode::FAILURE);
                }
                println!("audit log intact: {n} entries, head {hash}");
                Ok(ExitCode::SUCCESS)
            }
            Err(vitals_meta::MetaError::Chain(b)) => {
                eprintln!("audit log TAMPERED: {b}");
                Ok(ExitCode::FAILURE)
            }
            Err(e) => Err(e.into()),
        },
        AuditCommand::List { patient, actor, action, limit } => {
            let f = AuditFilter { patient, actor, action, limit, ..Default::default() };
            for e in d.meta().audit(&f)? {
                let ev = &e.event;
                println!(
                    "{:>6} {} {:<20} {:<18} {:<7} {} {} from {}",
                    e.seq,
                    format_time(ev.ts_ms),
                    ev.actor,
                    ev.action,
                    ev.outcome,
                    ev.patient.as_deref().unwrap_or("-"),
                    ev.target,
                    ev.origin
                );
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

pub(crate) fn vault(config: &Config, cmd: VaultCommand) -> anyhow::Result<ExitCode> {
    let d = Directory::open_for(config)?;
    let key_file = vitals_server::stores::vault_key_file(config);
    let from_env = config.vault.key_file.as_os_str().is_empty() && vitals_server::config::vault_key_env().is_some();
    if from_env && !matches!(cmd, VaultCommand::Status | VaultCommand::Rotate) {
        bail!("the key ring comes from VITALS_VAULT_KEY: change that variable (new key first) instead of a key file");
    }
    match cmd {
        VaultCommand::Status => {
            let v = vitals_server::stores::open_vault(config)?;
            println!(
                "key source: {}",
                if from_env { "VITALS_VAULT_KEY".into() } else { key_file.display().to_string() }
            );
            for (id, n) in v.key_usage()? {
                println!("{id}: seals {n} records");
            }
        }
        VaultCommand::NewKey { id } => {
            // The vault must open with the current ring before a key is added.
            vitals_server::stores::open_vault(config)?;
            let ring = vitals_vault::Keyring::add_primary(&key_file, &id)?;
            cli_audit(&d, "vault.key_added", None, &format!("key {id}"))?;
            println!("key ring now {} (primary {}); run `vitals admin vault rotate` next", ring.ids().join(", "), id);
        }
        VaultCommand::Rotate => {
            let v = vitals_server::stores::open_vault(config)?;
            let n = v.rotate(SystemClock.now_ms())?;
            cli_audit(&d, "vault.rotated", None, &format!("{n} records"))?;
            println!("re-sealed {n} records; {:?}", v.key_usage()?);
        }
        VaultCommand::RetireKey { id } => {
            let v = vitals_server::stores::open_vault(config)?;
            if let Some(n) = v.key_usage()?.get(&id) {
                bail!("key {id:?} still seals {n} records: run `vitals admin vault rotate` first");
            }
            drop(v);
            let ring = vitals_vault::Keyring::remove_from_file(&key_file, &id)?;
            cli_audit(&d, "vault.key_retired", None, &format!("key {id}"))?;
            println!("key ring now {}", ring.ids().join(", "));
        }
    }
    Ok(ExitCode::SUCCESS)
}
