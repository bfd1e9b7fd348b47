//! HTTPS and mutual TLS with certificates made here (rcgen): a device certificate maps to
//! a device and its patient on HTTPS and on the embedded MQTT listener.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::json;

use crate::harness::{ADMIN, NOW, TestServer, eventually, into_resp};

const OWN: &str = "p-own";

pub struct Leaf {
    pub cert: PathBuf,
    pub key: PathBuf,
    der: Vec<u8>,
}

fn ca(name: &str) -> CertifiedIssuer<'static, KeyPair> {
    let mut p = CertificateParams::new(Vec::<String>::new()).expect("params");
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.distinguished_name.push(DnType::CommonName, name);
    CertifiedIssuer::self_signed(p, KeyPair::generate().expect("key")).expect("ca")
}

fn leaf(dir: &Path, name: &str, issuer: &CertifiedIssuer<'static, KeyPair>, server: bool) -> Leaf {
    let key = KeyPair::generate().expect("key");
    let sans = if server { vec!["127.0.0.1".to_owned(), "localhost".to_owned()] } else { Vec::new() };
    let mut p = CertificateParams::new(sans).expect("params");
    p.distinguished_name.push(DnType::CommonName, name);
    p.extended_key_usages =
        vec![if server { ExtendedKeyUsagePurpose::ServerAuth } else { ExtendedKeyUsagePurpose::ClientAuth }];
    let cert = p.signed_by(&key, issuer).expect("sign");
    let (c, k) = (dir.join(format!("{name}.pem")), dir.join(format!("{name}.key")));
    std::fs::write(&c, cert.pem()).expect("write");
    std::fs::write(&k, key.serialize_pem()).expect("write");
    Leaf { cert: c, key: k, der: cert.der().to_vec() }
}

pub struct Pki {
    _dir: tempfile::TempDir,
    pub ca: PathBuf,
    pub server: Leaf,
    device: Leaf,
    unregistered: Leaf,
    rogue: Leaf,
}

pub fn pki() -> Pki {
    let dir = tempfile::tempdir().expect("tmp");
    let root = ca("Vitals test CA");
    let other = ca("Somebody else's CA");
    let ca_path = dir.path().join("ca.pem");
    std::fs::write(&ca_path, root.pem()).expect("write");
    Pki {
        ca: ca_path,
        server: leaf(dir.path(), "server", &root, true),
        device: leaf(dir.path(), "band-w1", &root, false),
        unregistered: leaf(dir.path(), "band-w2", &root, false),
        rogue: leaf(dir.path(), "rogue", &other, false),
        _dir: dir,
    }
}

fn https_agent(pki: &Pki, client: Option<&Leaf>) -> ureq::Agent {
    use ureq::tls::{Certificate, ClientCert, PrivateKey, RootCerts, TlsConfig, TlsProvider};
    let ca = Certificate::from_pem(&std::fs::read(&pki.ca).expect("ca")).expect("ca pem");
    let mut tls =
        TlsConfig::builder().provider(TlsProvider::Rustls).root_certs(RootCerts::Specific(Arc::new(vec![ca])));
    if let Some(l) = client {
        let cert = Certificate::from_pem(&std::fs::read(&l.cert).expect("cert")).expect("pem");
        let key = PrivateKey::from_pem(&std::fs::read(&l.key).expect("key")).expect("pem");
        tls = tls.client_cert(Some(ClientCert::new_with_certs(&[cert], key)));
    }
    ureq::Agent::config_builder().tls_config(tls.build()).http_status_as_error(false).build().into()
}

fn tls_server(pki: &Pki) -> TestServer {
    let (cert, key, ca) = (pki.server.cert.clone(), pki.server.key.clone(), pki.ca.clone());
    let server = TestServer::with_config(move |c| {
        c.server.tls_cert = cert;
        c.server.tls_key = key;
        c.server.tls_client_ca = ca;
        c.mqtt_listener.enabled = true;
        c.mqtt_listener.listen = "127.0.0.1:0".into();
    });
    server.app.directory.register_cert("wristband w1", "w1", Some(OWN), &pki.device.der, NOW).expect("register");
    server
}

fn https_url(server: &TestServer, path: &str) -> String {
    format!("{}{path}", server.url.replacen("http://", "https://", 1))
}

#[test]
fn https_serves_tls_and_a_registered_client_certificate_authenticates_its_device_for_its_patient() {
    let pki = pki();
    let server = tls_server(&pki);
    let samples =
        |p: &str| json!([{"patient": p, "metric": "heart_rate", "time": NOW - 1000, "value": 64}]).to_string();
    let post = |agent: &ureq::Agent, body: String, token: Option<&str>| {
        let mut req = agent.post(&https_url(&server, "/api/v1/samples")).header("Content-Type", "application/json");
        if let Some(t) = token {
            req = req.header("Authorization", &format!("Bearer {t}"));
        }
        req.send(body).map(into_resp)
    };
    // The device's certificate alone is its credential, for its own patient only.
    let device = https_agent(&pki, Some(&pki.device));
    let r = post(&device, samples(OWN), None).expect("https");
    assert_eq!((r.status, r.json()["accepted"].clone()), (200, json!(1)), "{}", r.body);
    let r = post(&device, samples("p-other"), None).expect("https");
    assert_eq!(r.json()["rejected"][0]["code"], "patient_not_allowed", "{}", r.body);
    let r = device.get(&https_url(&server, "/api/v1/patients")).call().map(into_resp).expect("https");
    assert_eq!(r.status, 403, "a device writes only: {}", r.body);
    // Without a certificate: tokens work over HTTPS, nothing else does.
    let anonymous = https_agent(&pki, None);
    assert_eq!(post(&anonymous, samples(OWN), None).expect("https").status, 401);
    assert_eq!(post(&anonymous, samples(OWN), Some(ADMIN)).expect("https").status, 200);
    // A certificate of our CA that no device was registered with is not a credential.
    let stranger = https_agent(&pki, Some(&pki.unregistered));
    assert_eq!(post(&stranger, samples(OWN), None).expect("https").status, 401);
    // A certificate from another CA does not even complete the handshake.
    assert!(post(&https_agent(&pki, Some(&pki.rogue)), samples(OWN), None).is_err(), "rogue client certificate");
    // TLS 1.2 and 1.3 are spoken, 1.1 is not (openssl is installed by scripts/test).
    let port = server.url.rsplit(':').next().expect("port").to_owned();
    let handshake = |args: &[&str]| {
        let out = std::process::Command::new("openssl")
            .args(["s_client", "-connect", &format!("127.0.0.1:{port}"), "-CAfile"])
            .arg(&pki.ca)
            .args(args)
            .stdin(std::process::Stdio::null())
            .output()
            .expect("openssl s_client");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert!(handshake(&["-tls1_2"]).contains("New, TLSv1.2"), "TLS 1.2");
    assert!(handshake(&["-tls1_3"]).contains("New, TLSv1.3"), "TLS 1.3");
    // The client allows TLS 1.1 (security level 0); the server refuses it.
    let old = handshake(&["-tls1_1", "-cipher", "DEFAULT@SECLEVEL=0"]);
    assert!(old.contains("Cipher is (NONE)") && !old.contains("New, TLSv1.1"), "TLS 1.1 must be refused: {old}");
    // Plain HTTP to the HTTPS port gets no answer.
    let plain = crate::harness::agent().get(&format!("{}/healthz", server.url)).call();
    assert!(plain.is_err() || plain.is_ok_and(|r| r.status() != 200), "plain HTTP must not be served");
    // Over TLS the session cookie is Secure.
    server
        .app
        .directory
        .create_user("nurse", vitals_server::auth::Role::Clinician, Some("correct horse battery"), None, NOW)
        .expect("u");
    let r = anonymous
        .post(&https_url(&server, "/api/v1/login"))
        .header("Content-Type", "application/json")
        .send(r#"{"name":"nurse","password":"correct horse battery"}"#)
        .map(into_resp)
        .expect("login");
    assert!(r.set_cookie.as_deref().is_some_and(|c| c.contains("; Secure")), "{:?}", r.set_cookie);
    // Revoked, the certificate stops working at the next request.
    let id = server.app.directory.meta().device_certs().expect("certs")[0].id.clone();
    assert!(server.app.directory.meta().revoke_device_cert(&id, NOW).expect("revoke"));
    assert_eq!(post(&https_agent(&pki, Some(&pki.device)), samples(OWN), None).expect("https").status, 401);
}

fn mqtt_client_config(pki: &Pki, client: &Leaf) -> rustls::ClientConfig {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from_pem_file(&pki.ca).expect("ca")).expect("root");
    let chain: Vec<CertificateDer<'static>> =
        CertificateDer::pem_file_iter(&client.cert).expect("cert").collect::<Result<_, _>>().expect("pem");
    let key = PrivateKeyDer::from_pem_file(&client.key).expect("key");
    rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .expect("client cert")
}

/// Connects with a client certificate and publishes one QoS 1 message: Ok once PUBACKed,
/// Err with what happened instead.
fn mqtt_publish(
    addr: std::net::SocketAddr,
    tls: rustls::ClientConfig,
    topic: &str,
    payload: String,
) -> Result<(), String> {
    use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS, TlsConfiguration, Transport};
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("rt");
    rt.block_on(async move {
        let mut opts = MqttOptions::new("band-w1", "127.0.0.1", addr.port());
        opts.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(Arc::new(tls))));
        let (client, mut events) = AsyncClient::new(opts, 10);
        client.publish(topic, QoS::AtLeastOnce, false, payload).await.map_err(|e| e.to_string())?;
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(15);
        loop {
            match tokio::time::timeout_at(deadline, events.poll()).await {
                Err(_) => return Err("no PUBACK in time".to_owned()),
                Ok(Ok(Event::Incoming(Packet::PubAck(_)))) => return Ok(()),
                Ok(Ok(_)) => {}
                Ok(Err(e)) => return Err(e.to_string()),
            }
        }
    })
}

#[test]
fn the_mqtt_listener_takes_samples_from_certified_devices_for_their_patient_only() {
    let pki = pki();
    let server = tls_server(&pki);
    eventually("the MQTT listener is up", || server.app.mqtt_listener_addr.get().is_some());
    let addr = *server.app.mqtt_listener_addr.get().expect("listener address");
    let payload =
        |v: u32| json!([{"patient": OWN, "metric": "heart_rate", "time": NOW - 2000, "value": v}]).to_string();
    mqtt_publish(addr, mqtt_client_config(&pki, &pki.device), &format!("vitals/{OWN}/samples"), payload(77))
        .expect("PUBACK for the device's own patient");
    // (This server's HTTP side speaks TLS, so the harness reads the store directly.)
    eventually("the MQTT sample is stored", || {
        server.store.has_patient(&vitals_core::PatientId::new(OWN).expect("id"))
    });
    // Another patient's topic: the connection is closed, nothing acknowledged or stored.
    let other = mqtt_publish(addr, mqtt_client_config(&pki, &pki.device), "vitals/p-other/samples", payload(78));
    assert!(other.is_err(), "publishing for another patient must fail");
    assert!(!server.store.has_patient(&vitals_core::PatientId::new("p-other").expect("id")));
    // A certificate of our CA but not registered: refused at CONNECT.
    let stranger =
        mqtt_publish(addr, mqtt_client_config(&pki, &pki.unregistered), &format!("vitals/{OWN}/samples"), payload(79));
    assert!(stranger.is_err_and(|e| e.contains("BadUserNamePassword") || e.contains("refused")), "unregistered cert");
    // Another CA: no handshake.
    assert!(
        mqtt_publish(addr, mqtt_client_config(&pki, &pki.rogue), &format!("vitals/{OWN}/samples"), payload(80))
            .is_err()
    );
}

/// What a device saw of one MQTT session over TLS without a client certificate.
#[derive(Debug, Default)]
pub struct Session {
    connack: Option<String>,
    pub pubacks: usize,
    suback: Option<String>,
    pub closed: Option<String>,
}

/// Connects with `user`/`password` (a token as the password), publishes `messages` (topic,
/// QoS, payload) and, if asked, subscribes; returns what came back until the listener
/// answered everything or closed the connection.
pub fn mqtt_token_session(
    addr: std::net::SocketAddr,
    ca: &Path,
    password: &str,
    messages: Vec<(String, rumqttc::QoS, String)>,
    subscribe: bool,
) -> Session {
    use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS, TlsConfiguration, Transport};
    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from_pem_file(ca).expect("ca")).expect("root");
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("rt");
    rt.block_on(async move {
        let mut opts = MqttOptions::new("band-token", "127.0.0.1", addr.port());
        opts.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(Arc::new(tls))));
        opts.set_credentials("band", password);
        let (client, mut events) = AsyncClient::new(opts, 10);
        let wanted_acks = messages.iter().filter(|m| m.1 == QoS::AtLeastOnce).count();
        // A QoS 2 message is never answered here: wait for the listener to close.
        let until_closed = messages.iter().any(|m| m.1 == QoS::ExactlyOnce);
        for (topic, qos, payload) in messages {
            client.publish(topic, qos, false, payload).await.expect("queued");
        }
        if subscribe {
            client.subscribe("vitals/#", QoS::AtLeastOnce).await.expect("queued");
        }
        let mut seen = Session::default();
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(15);
        loop {
            match tokio::time::timeout_at(deadline, events.poll()).await {
                Err(_) => {
                    seen.closed = Some("timed out".into());
                    break;
                }
                Ok(Ok(Event::Incoming(Packet::ConnAck(c)))) => seen.connack = Some(format!("{:?}", c.code)),
                Ok(Ok(Event::Incoming(Packet::PubAck(_)))) => seen.pubacks += 1,
                Ok(Ok(Event::Incoming(Packet::SubAck(s)))) => seen.suback = Some(format!("{:?}", s.return_codes)),
                Ok(Ok(_)) => {}
                Ok(Err(e)) => {
                    seen.closed = Some(e.to_string());
                    break;
                }
            }
            if !until_closed
                && seen.pubacks == wanted_acks
                && (!subscribe || seen.suback.is_some())
                && seen.connack.is_some()
            {
                break;
            }
        }
        seen
    })
}

/// A server whose MQTT listener takes a device token as the password (no client
/// certificates), with such a token bound to OWN and the listener's address.
fn token_listener(
    pki: &Pki,
    more: impl FnOnce(&mut vitals_server::config::Config),
) -> (TestServer, String, std::net::SocketAddr) {
    let (cert, key) = (pki.server.cert.clone(), pki.server.key.clone());
    let server = TestServer::with_config(move |c| {
        c.server.tls_cert = cert;
        c.server.tls_key = key;
        c.mqtt_listener.enabled = true;
        c.mqtt_listener.listen = "127.0.0.1:0".into();
        c.mqtt_listener.require_client_cert = false;
        more(c);
    });
    let new = vitals_server::auth::NewToken {
        name: "band",
        role: Some(vitals_server::auth::Role::Device),
        patient: Some(OWN),
        ..Default::default()
    };
    let (_, token) = server.app.directory.create_token(&new, NOW).expect("token");
    eventually("the MQTT listener is up", || server.app.mqtt_listener_addr.get().is_some());
    let addr = *server.app.mqtt_listener_addr.get().expect("listener address");
    (server, token, addr)
}

#[test]
fn without_client_certificates_a_device_token_is_the_mqtt_password_qos_2_is_refused_and_subscriptions_fail() {
    use rumqttc::QoS;
    let pki = pki();
    let (server, token, addr) = token_listener(&pki, |_| {});
    let topic = format!("vitals/{OWN}/samples");
    let sample =
        |metric: &str, v: u32| json!([{"patient": OWN, "metric": metric, "time": NOW - 2000, "value": v}]).to_string();
    let latest = |metric: &str| {
        let id = vitals_core::PatientId::new(OWN).expect("id");
        let m = server.app.catalog.id(metric).expect("metric");
        server.store.latest(&id).into_iter().find(|l| l.metric == m).map(|l| l.value)
    };
    // The token as password: QoS 1 acknowledged once durable, QoS 0 stored unacknowledged;
    // a subscription is answered with a failure code and the session goes on.
    let ok = mqtt_token_session(
        addr,
        &pki.ca,
        &token,
        vec![
            (topic.clone(), QoS::AtMostOnce, sample("spo2", 97)),
            (topic.clone(), QoS::AtLeastOnce, sample("heart_rate", 71)),
        ],
        true,
    );
    assert_eq!(ok.connack.as_deref(), Some("Success"), "{ok:?}");
    assert_eq!((ok.pubacks, ok.suback.as_deref(), ok.closed.as_deref()), (1, Some("[Failure]"), None), "{ok:?}");
    assert_eq!(latest("heart_rate"), Some(71.0), "the acknowledged sample is durable");
    eventually("the QoS 0 sample is stored", || latest("spo2") == Some(97.0));
    // A wrong password: refused at CONNECT.
    let wrong = mqtt_token_session(
        addr,
        &pki.ca,
        "vt_not-a-token",
        vec![(topic.clone(), QoS::AtLeastOnce, sample("heart_rate", 72))],
        false,
    );
    assert!(wrong.closed.as_deref().is_some_and(|e| e.contains("BadUserNamePassword")), "{wrong:?}");
    // QoS 2 is not offered: the connection closes and nothing of it is stored.
    let exactly_once = mqtt_token_session(
        addr,
        &pki.ca,
        &token,
        vec![(topic, QoS::ExactlyOnce, sample("respiratory_rate", 14))],
        false,
    );
    assert!(
        exactly_once.closed.as_deref().is_some_and(|e| e != "timed out") && exactly_once.pubacks == 0,
        "{exactly_once:?}"
    );
    assert_eq!(latest("respiratory_rate"), None);
    assert_eq!(latest("heart_rate"), Some(71.0), "the refused sessions changed nothing");
}

/// `vitals serve` with these settings (environment variables): its exit status and stderr,
/// or a panic if it started serving instead of stopping.
fn serve_fails(env: &[(&str, &Path)]) -> String {
    use std::io::Read as _;
    let dir = tempfile::tempdir().expect("tmp");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_vitals"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path().join("data"))
        .envs(env.iter().map(|(k, v)| (*k, v.as_os_str())))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn vitals");
    let mut status = None;
    let stopped = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        eventually("vitals serve to stop", || {
            status = child.try_wait().expect("wait");
            status.is_some()
        })
    }));
    if stopped.is_err() {
        let _ = child.kill();
        let _ = child.wait();
        panic!("vitals serve started with settings that cannot work: {env:?}");
    }
    assert!(status.is_some_and(|s| !s.success()), "a failing exit status");
    let mut err = String::new();
    child.stderr.take().expect("stderr").read_to_string(&mut err).expect("stderr");
    err
}

#[test]
fn tls_settings_that_cannot_work_stop_the_server_at_start_naming_the_setting() {
    let pki = pki();
    let cert = pki.server.cert.as_path();
    let err = serve_fails(&[("VITALS_SERVER_TLS_CERT", cert)]);
    assert!(err.contains("server.tls_key is needed with server.tls_cert"), "{err}");
    let err = serve_fails(&[
        ("VITALS_MQTT_LISTENER_ENABLED", Path::new("true")),
        ("VITALS_MQTT_LISTENER_TLS_CERT", cert),
        ("VITALS_MQTT_LISTENER_TLS_KEY", pki.server.key.as_path()),
    ]);
    assert!(err.contains("client certificates are required but no client CA is configured"), "{err}");
    let err = serve_fails(&[("VITALS_MQTT_LISTENER_ENABLED", Path::new("true"))]);
    assert!(err.contains("mqtt_listener: a TLS certificate is needed"), "{err}");
}

#[test]
fn the_mqtt_listener_caps_connections_and_what_a_client_may_send_before_it_signs_in() {
    use std::io::{Read, Write};
    let pki = pki();
    let (_server, token, addr) = token_listener(&pki, |c| c.mqtt_listener.max_connections = 1);
    let message = || {
        let s = json!([{"patient": OWN, "metric": "heart_rate", "time": NOW - 2000, "value": 70}]).to_string();
        vec![(format!("vitals/{OWN}/samples"), rumqttc::QoS::AtLeastOnce, s)]
    };

    // One connection at most: while a silent one holds the slot, a device is turned away.
    let silent = std::net::TcpStream::connect(addr).expect("connect");
    let refused = mqtt_token_session(addr, &pki.ca, &token, message(), false);
    assert_eq!(refused.pubacks, 0, "{refused:?}");
    assert!(refused.closed.is_some(), "{refused:?}");
    drop(silent);
    let mut ok = Session::default();
    eventually("the slot is free again", || {
        ok = mqtt_token_session(addr, &pki.ca, &token, message(), false);
        ok.pubacks == 1
    });

    // Before CONNECT is accepted a client may send one packet of at most 64 KiB: a CONNECT
    // that announces 1 MiB is cut off without the listener reading (or buffering) it.
    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from_pem_file(&pki.ca).expect("ca")).expect("root");
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    let tls = Arc::new(tls);
    // The handshake completes (once the last session's slot is free): what follows is about
    // MQTT, not TLS.
    let handshake = || {
        let name = rustls::pki_types::ServerName::try_from("127.0.0.1").expect("name");
        let conn = rustls::ClientConnection::new(tls.clone(), name).expect("client");
        let mut stream = rustls::StreamOwned::new(conn, std::net::TcpStream::connect(addr).expect("connect"));
        stream.sock.set_read_timeout(Some(std::time::Duration::from_secs(15))).expect("timeout");
        while stream.conn.is_handshaking() {
            stream.conn.complete_io(&mut stream.sock).ok()?;
        }
        Some(stream)
    };
    let mut stream = None;
    eventually("a TLS connection to the listener", || {
        stream = handshake();
        stream.is_some()
    });
    let mut stream = stream.expect("connected");
    // CONNECT (0x10), remaining length 1 MiB (varint 0x80 0x80 0x40), then 16 KiB of it.
    let mut packet = vec![0x10, 0x80, 0x80, 0x40];
    packet.extend(std::iter::repeat_n(0u8, 16 << 10));
    let at = std::time::Instant::now();
    let sent = stream.write_all(&packet).and_then(|()| stream.flush());
    let mut buf = [0u8; 64];
    // Either the listener already reset the connection while we wrote, or it closes it now.
    let closed = match sent {
        Err(e) => e.kind() == std::io::ErrorKind::ConnectionReset || e.kind() == std::io::ErrorKind::BrokenPipe,
        Ok(()) => match stream.read(&mut buf) {
            Ok(0) => true,
            Ok(_) => false,
            Err(e) => !matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut),
        },
    };
    assert!(closed, "the listener closes a connection whose first packet is over 64 KiB");
    // At once, from the length it announced (not after the 10 s a CONNECT may take).
    assert!(at.elapsed() < std::time::Duration::from_secs(5), "closed after {:?}", at.elapsed());
}
